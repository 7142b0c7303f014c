//! Reaching a concrete backend's own code from code generic over burn's `Backend`.

use std::any::Any;

/// `f(args)` when `args` (of type `A`, holding tensors of a generic backend) is in fact a `T`
/// (the same tensors of one concrete backend), its output returned as `Z` (which must then be
/// `f`'s output type `Y`); `args` back, untouched, otherwise. The backend is recognised by its
/// type at run time: this is how generic model code reaches a backend's own kernels (burn-flex's
/// one-pass loops, the cubecl kernels of this crate) and falls back to burn's operations
/// elsewhere.
pub fn on_backend<T: 'static, A: 'static, Y: 'static, Z: 'static>(
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
