//! Query cancel: psql's Ctrl-C, psycopg's `conn.cancel()`, JDBC's
//! `Statement.cancel()`. At startup each session gets a process id and a
//! secret key (sent to the client as `BackendKeyData`); a `CancelRequest`
//! naming both, on a new connection, ends the statement that session is
//! running with 57014, as PostgreSQL does, and the session goes on. A request
//! that arrives while no statement runs does nothing.
//!
//! pgwire's own connection manager would only interrupt a statement while it
//! is planned; Weft's answers stream after that, so the signal here reaches
//! the row stream too (`rows::stream`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgwire::api::ClientInfo;
use pgwire::api::cancel::CancelHandler;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::watch;

/// A session's cancel signal: a counter each cancel request bumps.
type Signal = Arc<watch::Sender<u64>>;
/// Live sessions by `(process id, secret key)`.
type Sessions = HashMap<(i32, i32), Signal>;

/// Every live session's cancel signal.
#[derive(Default)]
pub(crate) struct Cancels {
    sessions: Mutex<Sessions>,
}

impl Cancels {
    /// Gives the client's session its key and signal; the signal leaves the
    /// registry when the session ends (its [`SessionCancel`] drops).
    pub(crate) fn register(self: &Arc<Self>, client: &mut impl ClientInfo) {
        let random = uuid::Uuid::new_v4();
        let bytes = random.as_bytes();
        let pid = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & 0x7fff_ffff;
        let secret = i32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let signal = Arc::new(watch::Sender::new(0u64));
        self.lock().insert((pid, secret), Arc::clone(&signal));
        client.set_pid_and_secret_key(pid, SecretKey::I32(secret));
        client.session_extensions().insert(Arc::new(SessionCancel {
            key: (pid, secret),
            signal,
            cancels: Arc::clone(self),
        }));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // The map holds no invariant a panic elsewhere could break.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        // A cancel connection may decode the same 4-byte key as bytes.
        let Some(secret) = request.secret_key.as_i32() else {
            return;
        };
        let signal = self.lock().get(&(request.pid, secret)).cloned();
        match signal {
            Some(signal) => {
                signal.send_modify(|n| *n = n.wrapping_add(1));
                tracing::debug!(pid = request.pid, "PostgreSQL statement cancelled");
            }
            None => tracing::debug!("a cancel request for no live session"),
        }
    }
}

/// One session's signal; unregisters it when the session ends.
pub(crate) struct SessionCancel {
    key: (i32, i32),
    signal: Signal,
    cancels: Arc<Cancels>,
}

impl Drop for SessionCancel {
    fn drop(&mut self) {
        self.cancels.lock().remove(&self.key);
    }
}

/// The cancel signal of one statement: fires on a cancel request made after
/// the statement started.
pub(crate) struct StatementCancel(Option<watch::Receiver<u64>>);

impl StatementCancel {
    /// For the statement `client`'s session starts now.
    pub(crate) fn start(client: &(impl ClientInfo + ?Sized)) -> Self {
        Self(
            client
                .session_extensions()
                .get::<Arc<SessionCancel>>()
                .map(|s| s.signal.subscribe()),
        )
    }

    /// Resolves when the statement is cancelled; never, if it is not.
    pub(crate) async fn cancelled(&mut self) {
        if let Some(receiver) = self.0.as_mut()
            && receiver.changed().await.is_ok()
        {
            return;
        }
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_reaches_the_running_statement_only() {
        let cancels = Arc::new(Cancels::default());
        let signal = Arc::new(watch::Sender::new(0u64));
        cancels.lock().insert((7, 42), Arc::clone(&signal));
        let session = SessionCancel {
            key: (7, 42),
            signal: Arc::clone(&signal),
            cancels: Arc::clone(&cancels),
        };
        // A cancel before the statement starts does not reach it.
        cancels
            .on_cancel_request(CancelRequest::new(7, SecretKey::I32(42)))
            .await;
        let mut statement = StatementCancel(Some(session.signal.subscribe()));
        assert!(!statement.0.as_mut().unwrap().has_changed().unwrap());
        // A wrong secret does nothing; the right one fires, however a
        // cancel connection decoded it (a 4-byte key may arrive as bytes).
        cancels
            .on_cancel_request(CancelRequest::new(7, SecretKey::I32(41)))
            .await;
        assert!(!statement.0.as_mut().unwrap().has_changed().unwrap());
        let key = SecretKey::Bytes(42i32.to_be_bytes().to_vec().into());
        cancels.on_cancel_request(CancelRequest::new(7, key)).await;
        statement.cancelled().await;
        drop(session);
        assert_eq!(cancels.len(), 0, "the session left the registry");
    }
}
