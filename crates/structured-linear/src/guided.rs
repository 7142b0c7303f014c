//! Self-guided training (docs/reference.md §2): a dense guide trained beside a structured layer and mixed
//! in with a weight `alpha` that the trainer decays from 1 to 0.

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use rand::Rng;

use crate::error::LayerError;
use crate::layers::Dense;
use crate::linear::{flatten_tokens, StructuredLinear};

/// A structured layer with an optional dense guide:
/// `y = alpha * x W_guide + (1 - alpha) * structured(x) + bias` (one bias, the layer's outer
/// one; a LowRank inner bias is part of `structured(x)` and weighted with it, as in the
/// reference's guided forward).
///
/// `alpha` is not a trained parameter: the caller sets it (once per optimizer step) with
/// [`SelfGuided::set_alpha`]. With `alpha == 0` or no guide, the guide costs no compute. While
/// the guide is in use both paths are computed, also at `alpha == 1` (the structured factors
/// then get zero gradients, but weight decay and the FLOP count still apply, as in the
/// reference). Neither `alpha` nor `reduce_flop` is stored in the module's record.
#[derive(Module, Debug)]
pub struct SelfGuided<B: Backend> {
    /// The structured layer; it owns the bias.
    pub layer: StructuredLinear<B>,
    /// Dense guide `W_guide`, `[d_in, d_out]`; `None` when the layer is not guided (or no longer).
    pub guide: Option<Param<Tensor<B, 2>>>,
    alpha: f64,
    reduce_flop: bool,
    /// reduce_flop's draw for the next forwards (see [`SelfGuided::resample`]); always true
    /// outside reduce_flop mode.
    drawn: bool,
}

impl<B: Backend> SelfGuided<B> {
    /// Wraps `layer` without a guide: a plain structured layer.
    pub fn plain(layer: StructuredLinear<B>) -> Self {
        Self {
            layer,
            guide: None,
            alpha: 0.0,
            reduce_flop: false,
            drawn: true,
        }
    }

    /// Wraps `layer` with a guide initialised to its merged dense matrix (for BlockShuffle with
    /// the shuffle included), so training starts from the same function. `alpha` starts at 1.
    pub fn guided(layer: StructuredLinear<B>, reduce_flop: bool) -> Self {
        let guide = Param::from_tensor(layer.merged_weight().detach());
        Self {
            layer,
            guide: Some(guide),
            alpha: 1.0,
            reduce_flop,
            drawn: true,
        }
    }

    /// Wraps `layer` with the dense guide `guide` (`[d_in, d_out]`, e.g. the pretrained matrix
    /// the layer was factorised from, so that the model at alpha 1 computes the original one).
    /// `alpha` starts at 1.
    pub fn with_guide(layer: StructuredLinear<B>, guide: Tensor<B, 2>) -> Self {
        Self {
            layer,
            guide: Some(Param::from_tensor(guide.detach())),
            alpha: 1.0,
            reduce_flop: false,
            drawn: true,
        }
    }

    /// Sets the guide's mixing weight; it must lie in `[0, 1]`.
    pub fn set_alpha(&mut self, alpha: f64) -> Result<(), LayerError> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(LayerError::BadAlpha { alpha });
        }
        self.alpha = alpha;
        Ok(())
    }

    /// The current mixing weight (0 when there is no guide).
    pub fn alpha(&self) -> f64 {
        if self.guide.is_some() {
            self.alpha
        } else {
            0.0
        }
    }

    /// Whether each forward evaluates the guide only with probability `alpha`.
    pub fn reduce_flop(&self) -> bool {
        self.reduce_flop
    }

    /// Switches reduce_flop mode on or off.
    pub fn set_reduce_flop(&mut self, on: bool) {
        self.reduce_flop = on;
        self.drawn = true;
    }

    /// Whether the guide is present and has a non-zero weight.
    pub fn guide_active(&self) -> bool {
        self.guide.is_some() && self.alpha > 0.0
    }

    /// Whether `forward` evaluates the guide: it is active and (in reduce_flop mode) the last
    /// [`SelfGuided::resample`] drew it.
    pub fn guide_used(&self) -> bool {
        self.guide_active() && self.drawn
    }

    /// reduce_flop: draws, from the caller's RNG, whether the following forwards evaluate the
    /// guide (probability `alpha`); the trainer calls it once per micro-batch. Outside
    /// reduce_flop mode it draws nothing and the guide stays in use. Returns
    /// [`SelfGuided::guide_used`].
    pub fn resample<R: Rng + ?Sized>(&mut self, rng: &mut R) -> bool {
        self.drawn = self.draw_guide(rng);
        self.guide_used()
    }

    /// Removes the guide for good (after the guided phase); its cost and memory disappear.
    pub fn drop_guide(&mut self) {
        self.guide = None;
        self.alpha = 0.0;
    }

    /// Mix of guide and structured path (the structured path alone when reduce_flop's last
    /// draw skipped the guide).
    ///
    /// # Shapes
    /// - x: `[..., d_in]` -> `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let guide = match &self.guide {
            Some(guide) if self.alpha > 0.0 && self.drawn => guide,
            _ => return self.layer.forward(x),
        };
        // On the tokens flattened to one axis: each bias's gradient is then one reduction.
        let (x2, mut dims) = flatten_tokens(x);
        dims[D - 1] = self.layer.d_out();
        let from_guide = x2.clone().matmul(guide.val());
        let structured = self.layer.product(x2);
        let structured = match self.layer.inner_bias_out() {
            Some(c) => structured + c.unsqueeze::<2>(),
            None => structured,
        };
        let y = from_guide.mul_scalar(self.alpha) + structured.mul_scalar(1.0 - self.alpha);
        let y = match self.layer.outer_bias() {
            Some(bias) => y + bias.unsqueeze::<2>(),
            None => y,
        };
        y.reshape(dims)
    }

    /// The layer as one dense layer computing what [`SelfGuided::forward`] computes now: with
    /// the guide in use, weight `alpha W_guide + (1 - alpha) W` and bias
    /// `bias + (1 - alpha) c U`; otherwise the structured layer merged. Detached.
    pub fn to_dense(&self) -> StructuredLinear<B> {
        let guide = match &self.guide {
            Some(guide) if self.guide_used() => guide,
            _ => return self.layer.to_dense(),
        };
        let a = self.alpha;
        let weight = guide.val().mul_scalar(a) + self.layer.merged_weight().mul_scalar(1.0 - a);
        let inner = self.layer.inner_bias_out().map(|c| c.mul_scalar(1.0 - a));
        let bias = match (self.layer.outer_bias(), inner) {
            (Some(b), Some(c)) => Some(b + c),
            (b, c) => b.or(c),
        };
        StructuredLinear::Dense(Dense {
            weight: Param::from_tensor(weight.detach()),
            bias: bias.map(|b| Param::from_tensor(b.detach())),
        })
    }

    /// Draws whether this forward uses the guide: always outside reduce_flop mode (when the
    /// guide is active), with probability `alpha` inside it.
    pub fn draw_guide<R: Rng + ?Sized>(&self, rng: &mut R) -> bool {
        if !self.guide_active() {
            return false;
        }
        if !self.reduce_flop {
            return true;
        }
        rng.random::<f64>() < self.alpha
    }

    /// Forward FLOPs of `forward` for `tokens` vectors (2 per multiply-add).
    pub fn forward_flops(&self, tokens: u64) -> u64 {
        // Mirrors `forward`: the structured path always, the guide while in use.
        let guide = match self.guide_used() {
            true => (self.layer.d_in() * self.layer.d_out()) as u64,
            false => 0,
        };
        2 * tokens * (self.layer.weight_params() + guide)
    }
}
