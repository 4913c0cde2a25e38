//! What a worker of a distributed query (`weft worker`) needs of this crate:
//! the functions Weft's plans call by name, so a plan a coordinator sends
//! means on the worker what it meant there (the bounded `repeat` and kin
//! among them, never DataFusion's unbounded originals).

use datafusion::prelude::SessionContext;

use crate::error::QueryError;

/// Registers on a worker's session every function a coordinator's plan may
/// name: the bounded replacements, PostgreSQL's catalog functions, and the
/// one that shows ids as hex.
pub fn register_worker_functions(ctx: &SessionContext) -> Result<(), QueryError> {
    crate::bounded::register(ctx);
    crate::pg_catalog::register(ctx)?;
    ctx.register_udf(crate::ids::show_ids_udf());
    Ok(())
}
