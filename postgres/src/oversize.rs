//! A client message over `postgres_max_message_bytes`, as the session sees
//! it. `frames` reads and discards such a message's body (never buffering
//! it) and hands pgwire a small stand-in in its place: a `Query`, or a
//! `Parse` of the same statement name, whose text is [`stand_in`]. The
//! session answers the stand-in with SQLSTATE 54000 ([`refusal`]), in order
//! with the client's other messages, and the session goes on. The stand-in
//! carries a nonce drawn at start, so no client can forge one.

use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use pgwire::error::PgWireResult;

/// 128 random bits, drawn once per process.
static NONCE: LazyLock<String> = LazyLock::new(|| {
    let draw = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    format!("{:016x}{:016x}", draw(), draw())
});

fn prefix() -> String {
    format!("-- weft: oversize message {} ", *NONCE)
}

/// The statement text that stands in for a message of `bytes` bytes over
/// the limit of `max`.
pub(crate) fn stand_in(bytes: usize, max: usize) -> String {
    format!("{}{bytes} {max}", prefix())
}

/// The 54000 error for a stand-in; `Ok` for any other statement.
pub(crate) fn refusal(sql: &str) -> PgWireResult<()> {
    let Some(sizes) = sql.strip_prefix(&prefix()) else {
        return Ok(());
    };
    let mut sizes = sizes.split(' ');
    let (bytes, max) = (sizes.next().unwrap_or("?"), sizes.next().unwrap_or("?"));
    Err(crate::rows::user_error(
        "54000",
        format!(
            "a message of {bytes} bytes is over the limit of {max} (postgres_max_message_bytes); \
             send a shorter statement or fewer parameter bytes"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stand_in_is_refused() {
        let stand_in = stand_in(17_000_000, 16_777_216);
        let message = format!("{:?}", refusal(&stand_in).err());
        assert!(
            message.contains("54000") && message.contains("17000000 bytes"),
            "{message}"
        );
        assert!(refusal("SELECT 1").is_ok());
        // Without the nonce, the same words are just a comment.
        assert!(refusal("-- weft: oversize message 0 17000000 16777216").is_ok());
    }
}
