//! The decoder-only transformer: FFN (GELU / SwiGLU / ReLU), blocks and the model (attention
//! is in [`crate::attention`], the norms in [`crate::norm`], the KV cache in [`crate::cache`]).
//!
//! Every linear layer is a [`SelfGuided`] structured layer (guide absent unless the config asks
//! for self-guided training), so the model never forks per structure.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{relu, silu};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use structured_linear::{SelfGuided, Structure};

use crate::attention::{Attention, PassPositions, Positions};
use crate::cache::{KvCache, LayerCache};
use crate::config::{ActivationKind, NormPlacement, Place, Position, TransformerConfig};
use crate::error::ModelError;
use crate::gelu::gelu_tanh;
use crate::norm::Norm;
use crate::place::linear;

/// The feed-forward network.
#[derive(Module, Debug)]
pub struct Ffn<B: Backend> {
    /// `d_model -> d_ff` (SwiGLU: the up projection).
    pub fc1: SelfGuided<B>,
    /// SwiGLU gate, `d_model -> d_ff`.
    pub gate: Option<SelfGuided<B>>,
    /// `d_ff -> d_model`.
    pub fc2: SelfGuided<B>,
    relu: bool,
}

impl<B: Backend> Ffn<B> {
    fn new(
        config: &TransformerConfig,
        layer: usize,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            fc1: linear(config, layer, Place::Fc1, device)?,
            gate: match config.activation {
                ActivationKind::SwiGlu => Some(linear(config, layer, Place::Gate, device)?),
                _ => None,
            },
            fc2: linear(config, layer, Place::Fc2, device)?,
            relu: config.activation == ActivationKind::Relu,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, d_model]` -> same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = match &self.gate {
            Some(gate) => silu(gate.forward(x.clone())) * self.fc1.forward(x),
            None if self.relu => relu(self.fc1.forward(x)),
            None => gelu_tanh(self.fc1.forward(x)),
        };
        self.fc2.forward(h)
    }
}

/// Every linear layer of a block in order (q, k, v, o, fc1, [gate], fc2), borrowed with the
/// given borrow (`&` or `&mut`): the one place that lists them.
macro_rules! block_linears {
    ($block:expr, $($borrow:tt)+) => {{
        let (attn, ffn) = ($($borrow)+ $block.attn, $($borrow)+ $block.ffn);
        [
            $($borrow)+ attn.q,
            $($borrow)+ attn.k,
            $($borrow)+ attn.v,
            $($borrow)+ attn.o,
            $($borrow)+ ffn.fc1,
        ]
        .into_iter()
        .chain(($($borrow)+ ffn.gate).into_iter())
        .chain([$($borrow)+ ffn.fc2])
    }};
}

/// One transformer block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// Norm of the attention branch (before it, or on its output).
    pub norm1: Norm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Norm of the FFN branch.
    pub norm2: Norm<B>,
    /// Feed-forward network.
    pub ffn: Ffn<B>,
    dropout: Dropout,
    branch_output_norm: bool,
}

impl<B: Backend> Block<B> {
    /// The linear layer at `place` (None: a gate without SwiGLU).
    pub fn linear(&self, place: Place) -> Option<&SelfGuided<B>> {
        match place {
            Place::Q => Some(&self.attn.q),
            Place::K => Some(&self.attn.k),
            Place::V => Some(&self.attn.v),
            Place::O => Some(&self.attn.o),
            Place::Fc1 => Some(&self.ffn.fc1),
            Place::Gate => self.ffn.gate.as_ref(),
            Place::Fc2 => Some(&self.ffn.fc2),
        }
    }

    /// The linear layer at `place`, mutable (None: a gate without SwiGLU).
    pub fn linear_mut(&mut self, place: Place) -> Option<&mut SelfGuided<B>> {
        match place {
            Place::Q => Some(&mut self.attn.q),
            Place::K => Some(&mut self.attn.k),
            Place::V => Some(&mut self.attn.v),
            Place::O => Some(&mut self.attn.o),
            Place::Fc1 => Some(&mut self.ffn.fc1),
            Place::Gate => self.ffn.gate.as_mut(),
            Place::Fc2 => Some(&mut self.ffn.fc2),
        }
    }

    fn new(
        config: &TransformerConfig,
        layer: usize,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            norm1: Norm::new(config.norm, config.d_model, config.norm_eps, device),
            attn: Attention::new(config, layer, device)?,
            norm2: Norm::new(config.norm, config.d_model, config.norm_eps, device),
            ffn: Ffn::new(config, layer, device)?,
            dropout: DropoutConfig::new(config.dropout).init(),
            branch_output_norm: config.norm_placement == NormPlacement::BranchOutput,
        })
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        positions: &PassPositions<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        if self.branch_output_norm {
            let a = self
                .norm1
                .forward(self.attn.forward(x.clone(), positions, cache));
            let x = x + self.dropout.forward(a);
            let f = self.norm2.forward(self.ffn.forward(x.clone()));
            x + self.dropout.forward(f)
        } else {
            let a = self
                .attn
                .forward(self.norm1.forward(x.clone()), positions, cache);
            let x = x + self.dropout.forward(a);
            let f = self.ffn.forward(self.norm2.forward(x.clone()));
            x + self.dropout.forward(f)
        }
    }
}

/// A decoder-only transformer language model.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embedding `[vocab_size, d_model]`.
    pub tok_emb: Param<Tensor<B, 2>>,
    /// Learned position embedding `[max_seq_len, d_model]` (None with RoPE).
    pub pos_emb: Option<Param<Tensor<B, 2>>>,
    /// The blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm (None when the config has none).
    pub final_norm: Option<Norm<B>>,
    /// Untied output head `[d_model, vocab_size]` (None when tied to `tok_emb`).
    pub head: Option<Param<Tensor<B, 2>>>,
    /// Bias of the untied head `[vocab_size]`.
    pub head_bias: Option<Param<Tensor<B, 1>>>,
    /// Position indices and RoPE tables (constants, built once on the model's device).
    pub(crate) positions: Positions<B>,
    dropout: Dropout,
    #[module(skip)]
    config: TransformerConfig,
}

impl TransformerConfig {
    /// Validates the configuration and builds the model with its initialisation: linear
    /// weights and embeddings ~ N(0, init_std^2) (or the structured init configured), biases 0,
    /// norms 1 (weight) and 0 (bias).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Transformer<B>, ModelError> {
        self.validate()?;
        let normal = |shape: [usize; 2]| {
            Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, self.init_std),
                device,
            ))
        };
        let blocks = (0..self.n_layers)
            .map(|layer| Block::new(self, layer, device))
            .collect::<Result<_, _>>()?;
        let model = Transformer {
            tok_emb: normal([self.vocab_size, self.d_model]),
            pos_emb: (self.position == Position::Learned)
                .then(|| normal([self.max_seq_len, self.d_model])),
            blocks,
            final_norm: self
                .final_norm
                .then(|| Norm::new(self.norm, self.d_model, self.norm_eps, device)),
            head: (!self.tie_embeddings).then(|| normal([self.d_model, self.vocab_size])),
            head_bias: (!self.tie_embeddings && self.head_bias)
                .then(|| Param::from_tensor(Tensor::zeros([self.vocab_size], device))),
            positions: Positions::new(self, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            config: self.clone(),
        };
        // burn's norms create their parameters lazily, and a clone of a lazy parameter
        // initialises a tensor of its own. Materialise them now, so that clones of the model
        // (cast copies for mixed precision, data-parallel replicas) share its parameters and
        // their gradients reach it.
        struct Materialise;
        impl<B: Backend> ModuleVisitor<B> for Materialise {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let _ = param.val();
            }
        }
        model.visit(&mut Materialise);
        Ok(model)
    }
}

impl<B: Backend> Transformer<B> {
    /// The configuration the model was built from.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    /// Full causal forward of a batch of sequences starting at position 0.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` -> logits `[batch, seq, vocab_size]`
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, ModelError> {
        let [_, t] = tokens.dims();
        self.check(t, 0)?;
        Ok(self.run(tokens, 0, None))
    }

    /// Forward of the next tokens of every sequence in the batch, continuing from the cache
    /// (prefill when the cache is empty, one decoding step for `seq == 1`).
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` -> logits `[batch, seq, vocab_size]`
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [b, t] = tokens.dims();
        let offset = cache.admit(self.blocks.len(), self.config.max_seq_len, b, t)?;
        let logits = self.run(tokens, offset, Some(&mut cache.layers));
        cache.advance(b, t);
        Ok(logits)
    }

    fn check(&self, t: usize, offset: usize) -> Result<(), ModelError> {
        if t == 0 {
            return Err(ModelError::Empty("no tokens"));
        }
        if offset + t > self.config.max_seq_len {
            return Err(ModelError::ContextOverflow {
                needed: offset + t,
                capacity: self.config.max_seq_len,
            });
        }
        Ok(())
    }

    /// The final hidden states of a full causal forward (after the final norm): what the output
    /// head multiplies. `forward` is `hidden` followed by [`Transformer::output_head`]; a loss
    /// that fuses the head's product with itself (the trainer's) starts here.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` -> `[batch * seq, d_model]`
    pub fn hidden(&self, tokens: Tensor<B, 2, Int>) -> Result<Tensor<B, 2>, ModelError> {
        let [_, t] = tokens.dims();
        self.check(t, 0)?;
        Ok(self.trunk(tokens, 0, None))
    }

    /// The output head's weight as the model stores it (see [`HeadWeight`]) and its bias:
    /// logits are `hidden · weight + bias`.
    pub fn output_head(&self) -> (HeadWeight<B>, Option<Tensor<B, 1>>) {
        let weight = match &self.head {
            Some(head) => HeadWeight::Columns(head.val()),
            None => HeadWeight::Rows(self.tok_emb.val()),
        };
        (weight, self.head_bias.as_ref().map(|b| b.val()))
    }

    fn run(
        &self,
        tokens: Tensor<B, 2, Int>,
        offset: usize,
        cache: Option<&mut Vec<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let [b, t] = tokens.dims();
        let v = self.config.vocab_size;
        let x = self.trunk(tokens, offset, cache);
        let (weight, bias) = self.output_head();
        let logits = x.matmul(weight.columns());
        let logits = match bias {
            Some(bias) => logits + bias.unsqueeze::<2>(),
            None => logits,
        };
        logits.reshape([b, t, v])
    }

    /// Embedding, blocks and final norm: `[batch * seq, d_model]`.
    fn trunk(
        &self,
        tokens: Tensor<B, 2, Int>,
        offset: usize,
        mut cache: Option<&mut Vec<LayerCache<B>>>,
    ) -> Tensor<B, 2> {
        let [b, t] = tokens.dims();
        let d = self.config.d_model;
        let mut x = burn::tensor::module::embedding(self.tok_emb.val(), tokens);
        if let Some(pos) = &self.pos_emb {
            x = x + pos.val().narrow(0, offset, t).reshape([1, t, d]);
        }
        x = self.dropout.forward(x);
        let positions = PassPositions::new(&self.positions, offset);
        for (i, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|layers| &mut layers[i]);
            x = block.forward(x, &positions, slot);
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward(x);
        }
        x.reshape([b * t, d])
    }

    fn linears_mut(&mut self) -> Vec<&mut SelfGuided<B>> {
        self.blocks
            .iter_mut()
            .flat_map(|b| block_linears!(b, &mut))
            .collect()
    }

    /// Every linear layer of the model, block by block (q, k, v, o, fc1, [gate], fc2).
    pub fn linears(&self) -> Vec<&SelfGuided<B>> {
        self.blocks
            .iter()
            .flat_map(|b| block_linears!(b, &))
            .collect()
    }

    /// Sets the self-guided mixing weight of every guided layer (one alpha for the model).
    pub fn set_alpha(&mut self, alpha: f64) -> Result<(), ModelError> {
        for l in self.linears_mut() {
            if l.guide.is_some() {
                l.set_alpha(alpha).map_err(|source| ModelError::Layer {
                    place: "self_guided".into(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Switches self-guided training's reduce_flop mode on or off for every layer.
    pub fn set_reduce_flop(&mut self, on: bool) {
        self.linears_mut()
            .into_iter()
            .for_each(|l| l.set_reduce_flop(on));
    }

    /// reduce_flop: draws for every guided layer, from `rng`, whether the next forwards
    /// evaluate its guide (probability alpha); returns how many do. Without reduce_flop every
    /// active guide is used and nothing is drawn.
    pub fn resample_guides<R: rand::Rng + ?Sized>(&mut self, rng: &mut R) -> usize {
        self.linears_mut()
            .into_iter()
            .filter_map(|l| l.guide.is_some().then(|| l.resample(rng)))
            .filter(|&used| used)
            .count()
    }

    /// Forward FLOPs of all linear layers (attention projections and FFN, guides as currently
    /// used) for `tokens` tokens: with [`accounting::forward_flops`]'s score and head terms this
    /// is what a forward costs right now (2 FLOPs per multiply-add).
    ///
    /// [`accounting::forward_flops`]: crate::accounting::forward_flops
    pub fn linear_flops(&self, tokens: u64) -> u64 {
        self.linears().iter().map(|l| l.forward_flops(tokens)).sum()
    }

    /// Whether any layer still has its self-guided guide (until [`Transformer::drop_guides`]).
    pub fn has_guides(&self) -> bool {
        self.linears().iter().any(|l| l.guide.is_some())
    }

    /// Drops every guide for good (end of the guided phase).
    pub fn drop_guides(&mut self) {
        self.linears_mut().into_iter().for_each(|l| l.drop_guide());
        self.config.self_guided = false;
    }

    /// Gives every structured layer without a guide a fresh one, initialised to its merged
    /// matrix (so the model computes the same function; alpha 1), as self-guided training from
    /// scratch starts.
    pub fn add_guides(&mut self) {
        for l in self.linears_mut() {
            if l.guide.is_none() && l.layer.structure() != Structure::Dense {
                *l = SelfGuided::guided(l.layer.clone(), l.reduce_flop());
            }
        }
        self.config.self_guided = true;
    }

    /// Pre-merge: the same model with every linear layer folded into one dense matrix. Inside
    /// the guided phase a layer's matrix is the mix the model computes now (guide and structure
    /// at the current alpha). Its outputs equal this model's to float tolerance; its parameters
    /// are the dense model's.
    pub fn merged(&self) -> Transformer<B> {
        let mut out = self.clone();
        for l in out.linears_mut() {
            *l = SelfGuided::plain(l.to_dense());
        }
        let c = &mut out.config;
        c.self_guided = false;
        c.ffn.fc1 = Structure::Dense;
        c.ffn.fc2 = Structure::Dense;
        c.attention.q = Structure::Dense;
        c.attention.k = Structure::Dense;
        c.attention.v = Structure::Dense;
        c.attention.o = Structure::Dense;
        c.overrides.clear();
        out
    }
}

/// The output head's weight in the orientation the model stores it, so that work on the
/// weight itself (its gradient, an elementwise product with it) can follow its memory layout.
#[derive(Clone, Debug)]
pub enum HeadWeight<B: Backend> {
    /// An untied head, `[d_model, vocab_size]`: logits are `hidden · w`.
    Columns(Tensor<B, 2>),
    /// The tied token embedding, `[vocab_size, d_model]`: logits are `hidden · eᵀ`.
    Rows(Tensor<B, 2>),
}

impl<B: Backend> HeadWeight<B> {
    /// The weight as `[d_model, vocab_size]` (a transposed view when tied).
    pub fn columns(self) -> Tensor<B, 2> {
        match self {
            HeadWeight::Columns(w) => w,
            HeadWeight::Rows(e) => e.transpose(),
        }
    }
}
