//! The linear layer at one place of the model (a block's q, k, v, o, fc1, gate or fc2), built
//! from the config: its structure, initialisation and bias, self-guided when the config asks.

use burn::tensor::backend::Backend;
use structured_linear::{SelfGuided, Structure};

use crate::config::{Place, TransformerConfig};
use crate::error::ModelError;

/// The layer at `place` of block `layer`, self-guided when the config asks for it.
pub(crate) fn linear<B: Backend>(
    config: &TransformerConfig,
    layer: usize,
    place: Place,
    device: &B::Device,
) -> Result<SelfGuided<B>, ModelError> {
    let lc = config.linear(layer, place);
    let built = lc.init(device).map_err(|source| ModelError::Layer {
        place: place.path().into(),
        source,
    })?;
    Ok(if config.self_guided && lc.structure != Structure::Dense {
        SelfGuided::guided(built, false)
    } else {
        SelfGuided::plain(built)
    })
}
