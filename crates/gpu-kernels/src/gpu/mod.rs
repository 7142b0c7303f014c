//! The kernels on burn's cubecl backends, and how generic code reaches them.

pub(crate) mod layer_norm;
mod layer_norm_grad_kernel;
mod layer_norm_kernel;
mod layer_norm_node;
mod layer_norm_ops;

use std::any::Any;

/// `f(args)` when the tensors of `args` (type `A`) are those of the concrete backend whose
/// tensors make up `T`; `args` back otherwise. Generic code reaches a backend's own kernels this
/// way: the backend is recognised by its type at run time.
pub(crate) fn on<T: 'static, A: 'static, Y: 'static, Z: 'static>(
    args: A,
    f: impl FnOnce(T) -> Y,
) -> Result<Z, A> {
    let boxed: Box<dyn Any> = Box::new(args);
    match boxed.downcast::<T>() {
        Ok(args) => {
            let y: Box<dyn Any> = Box::new(f(*args));
            Ok(*y
                .downcast::<Z>()
                .expect("the output types match when the inputs do"))
        }
        Err(boxed) => Err(*boxed
            .downcast::<A>()
            .expect("the arguments keep their type")),
    }
}
