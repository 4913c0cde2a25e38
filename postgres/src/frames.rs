//! Between a client's socket and pgwire: TLS negotiation, a size limit on
//! every message checked from its header before its body is read (pgwire
//! itself buffers a whole message, up to 1 GiB, before parsing it; an
//! oversize body is streamed past and answered 54000), a budget
//! shared by every session that each message is charged before its body is
//! read, and an idle deadline. pgwire serves the other end of an in-process
//! socket pair, so it only ever sees bounded, plaintext messages.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

/// The limits of the PostgreSQL listener's sessions (config keys
/// `postgres_idle_timeout_secs`, `postgres_max_message_bytes`,
/// `postgres_message_budget_bytes`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgLimits {
    /// A session that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The largest message a client may send (a statement, a Bind's
    /// parameters).
    pub max_message_bytes: usize,
    /// What the messages of all sessions together may hold at once; a
    /// message waits for room (within the idle deadline) before its body is
    /// read. At least `max_message_bytes`.
    pub message_budget_bytes: usize,
}

impl Default for PgLimits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            max_message_bytes: 16 * 1024 * 1024,
            message_budget_bytes: 256 * 1024 * 1024,
        }
    }
}
/// The startup (TLS and the startup packet) must be done within this.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The startup packet is small (user, database, options).
const MAX_STARTUP_BYTES: usize = 64 * 1024;

/// How long pgwire may take to finish a session once its client stopped
/// sending (a statement in flight still ends by the query timeout).
const FINISH_GRACE: Duration = Duration::from_secs(5);

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A PostgreSQL `ErrorResponse` (a FATAL one closes the session).
fn error_message(severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// Reads one startup-phase packet (length, then body; no type byte).
async fn startup_packet(client: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = client.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| (8..=MAX_STARTUP_BYTES).contains(l))
        .ok_or_else(|| std::io::Error::other("a startup packet of impossible length"))?;
    let mut packet = Vec::with_capacity(len);
    packet.extend_from_slice(&(len as i32).to_be_bytes());
    packet.resize(len, 0);
    client.read_exact(&mut packet[4..]).await?;
    Ok(packet)
}

fn code(packet: &[u8]) -> i32 {
    i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
}

/// Negotiates TLS (or declines it) and reads the startup packet.
async fn start(
    mut tcp: TcpStream,
    tls: Option<&TlsAcceptor>,
) -> std::io::Result<(Box<dyn Stream>, Vec<u8>)> {
    loop {
        let packet = startup_packet(&mut tcp).await?;
        match (code(&packet), tls) {
            (SSL_REQUEST, Some(acceptor)) => {
                tcp.write_all(b"S").await?;
                tcp.flush().await?;
                let mut stream = acceptor.accept(tcp).await?;
                let packet = startup_packet(&mut stream).await?;
                return Ok((Box::new(stream), packet));
            }
            (SSL_REQUEST | GSSENC_REQUEST, _) => {
                tcp.write_all(b"N").await?;
                tcp.flush().await?;
            }
            // With TLS configured, every listener speaks only TLS.
            (_, Some(_)) => {
                let refusal = error_message(
                    "FATAL",
                    "28000",
                    "this server accepts TLS connections only; connect with sslmode=require",
                );
                tcp.write_all(&refusal).await?;
                tcp.flush().await?;
                return Err(std::io::Error::other(
                    "a plaintext startup with TLS configured",
                ));
            }
            _ => return Ok((Box::new(tcp), packet)),
        }
    }
}

/// Copies the client's messages to pgwire one by one: each header is read
/// within the idle deadline, and a body over the size limit is never
/// buffered: [`refuse_oversize`] streams it past and answers it. Each
/// body is charged to `budget` (KiB permits) before it is read; a session
/// holds the charges of its last two messages (the one pgwire may still be
/// working on, and the one it is reading), released as later ones come.
async fn client_to_server(
    client: &mut (impl AsyncRead + Unpin),
    server: &mut (impl AsyncWrite + Unpin),
    limits: &PgLimits,
    budget: &Arc<Semaphore>,
) -> std::io::Result<Option<Vec<u8>>> {
    let idle = limits.idle_timeout;
    let max = limits.max_message_bytes;
    let mut header = [0u8; 5];
    let mut held: VecDeque<OwnedSemaphorePermit> = VecDeque::with_capacity(2);
    loop {
        match tokio::time::timeout(idle, client.read_exact(&mut header)).await {
            Err(_) => {
                return Ok(Some(error_message(
                    "FATAL",
                    "57P05",
                    &format!(
                        "the session was idle for {} seconds and is closed; reconnect",
                        idle.as_secs()
                    ),
                )));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Ok(read) => {
                read?;
            }
        }
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let body = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_sub(4))
            .ok_or_else(|| std::io::Error::other("a message of impossible length"))?;
        if body > max {
            match refuse_oversize(client, server, header[0], body, max, idle).await? {
                Some(last_word) => return Ok(Some(last_word)),
                None => continue,
            }
        }
        if held.len() == 2 {
            held.pop_front();
        }
        let kib = u32::try_from(body.div_ceil(1024)).unwrap_or(u32::MAX);
        let charge = tokio::time::timeout(idle, Arc::clone(budget).acquire_many_owned(kib));
        match charge.await {
            Ok(Ok(permit)) => held.push_back(permit),
            _ => {
                return Ok(Some(error_message(
                    "FATAL",
                    "53000",
                    "the server's message budget stayed full (other sessions are sending \
                     large statements); reconnect and retry",
                )));
            }
        }
        server.write_all(&header).await?;
        let copied = tokio::io::copy(&mut (&mut *client).take(body as u64), server).await?;
        if copied < body as u64 {
            return Ok(None);
        }
    }
}

/// Bytes of an oversize `Parse` kept to find its statement name.
const NAME_BYTES: usize = 1024;

/// Answers a message of `body` bytes over `max` whose header was read: its
/// body is read and discarded (streamed, within the idle deadline: the
/// client is still sending it and would miss an answer sent before it
/// finishes). A `Query`, or a `Parse` whose statement name is found, goes
/// to pgwire as a stand-in that the session answers with 54000, and the
/// session goes on (`None`); any other message ends it with a FATAL 54000
/// (`Some`, for the client).
async fn refuse_oversize(
    client: &mut (impl AsyncRead + Unpin),
    server: &mut (impl AsyncWrite + Unpin),
    kind: u8,
    body: usize,
    max: usize,
    idle: Duration,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut start = vec![0u8; body.min(NAME_BYTES)];
    let discard = async {
        client.read_exact(&mut start).await?;
        let rest = (body - start.len()) as u64;
        let skipped =
            tokio::io::copy(&mut (&mut *client).take(rest), &mut tokio::io::sink()).await?;
        std::io::Result::Ok(skipped == rest)
    };
    match tokio::time::timeout(idle, discard).await {
        Ok(Ok(true)) => {}
        // The client went away or stalled mid-message: nobody to answer.
        Ok(Ok(false)) | Ok(Err(_)) | Err(_) => {
            return Err(std::io::Error::other(
                "the client stopped sending in the middle of an oversize message",
            ));
        }
    }
    let text = crate::oversize::stand_in(body, max);
    let stand_in = match kind {
        b'Q' => Some(message(b'Q', &[text.as_bytes(), b"\0"])),
        b'P' => start.iter().position(|b| *b == 0).map(|end| {
            // The statement's name, the stand-in text, no parameter types.
            message(
                b'P',
                &[&start[..=end], text.as_bytes(), b"\0", &0i16.to_be_bytes()],
            )
        }),
        _ => None,
    };
    match stand_in {
        Some(stand_in) => {
            server.write_all(&stand_in).await?;
            Ok(None)
        }
        None => Ok(Some(error_message(
            "FATAL",
            "54000",
            &format!(
                "a message of {body} bytes is over the limit of {max} \
                 (postgres_max_message_bytes); send a shorter statement or fewer parameter bytes"
            ),
        ))),
    }
}

/// A frontend message: its type, length, then `parts`.
fn message(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 5);
    out.push(kind);
    out.extend_from_slice(&((len + 4) as i32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// Serves one client: negotiates, then runs pgwire over an in-process socket
/// pair with the client's messages copied through [`client_to_server`].
pub(crate) async fn serve_connection<H>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    limits: PgLimits,
    budget: Arc<Semaphore>,
) -> std::io::Result<()>
where
    H: pgwire::api::PgWireServerHandlers + Send + Sync + 'static,
{
    let (client, startup) = tokio::time::timeout(STARTUP_TIMEOUT, start(tcp, tls.as_ref()))
        .await
        .map_err(|_| std::io::Error::other("the client did not start within the deadline"))??;
    let (ours, theirs) = UnixStream::pair()?;
    let pgwire = tokio::spawn(pgwire::tokio::process_socket_unix(theirs, handlers));
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = ours.into_split();
    server_write.write_all(&startup).await?;
    let upstream = async {
        let last_word =
            client_to_server(&mut client_read, &mut server_write, &limits, &budget).await;
        let _ = server_write.shutdown().await;
        last_word
    };
    let last_word = {
        let downstream = tokio::io::copy(&mut server_read, &mut client_write);
        tokio::pin!(downstream);
        tokio::select! {
            last_word = upstream => match last_word? {
                Some(error) => Some(error),
                // The client has said all it will (a CancelRequest's
                // connection sends one packet and closes): pgwire gets to act
                // on what it read and end the session itself, within a grace.
                None => {
                    let _ = tokio::time::timeout(FINISH_GRACE, &mut downstream).await;
                    None
                }
            },
            copied = &mut downstream => {
                copied?;
                None
            }
        }
    };
    if let Some(error) = last_word {
        let _ = client_write.write_all(&error).await;
    }
    let _ = client_write.shutdown().await;
    pgwire.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_are_well_formed() {
        let e = error_message("FATAL", "54000", "too big");
        assert_eq!(e[0], b'E');
        let len = i32::from_be_bytes([e[1], e[2], e[3], e[4]]) as usize;
        assert_eq!(len + 1, e.len());
        assert!(e.ends_with(b"too big\0\0"));
    }

    /// A `Query` message of `body` bytes (its text, then the terminator).
    fn query(body: usize) -> Vec<u8> {
        let mut message = vec![b'Q'];
        message.extend_from_slice(&((body + 4) as i32).to_be_bytes());
        message.extend(std::iter::repeat_n(b' ', body - 1));
        message.push(0);
        message
    }

    #[tokio::test]
    async fn messages_wait_for_room_in_the_shared_budget() {
        // A budget of 2 KiB; each session sends a 1.5 KiB message.
        let budget = Arc::new(Semaphore::new(2));
        let (mut client_a, mut ours_a) = tokio::io::duplex(1 << 16);
        let (mut server_a, mut pgwire_a) = tokio::io::duplex(1 << 16);
        let (mut client_b, mut ours_b) = tokio::io::duplex(1 << 16);
        let (mut server_b, mut pgwire_b) = tokio::io::duplex(1 << 16);
        client_a.write_all(&query(1536)).await.unwrap();
        client_b.write_all(&query(1536)).await.unwrap();
        let a = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                client_to_server(&mut ours_a, &mut server_a, &PgLimits::default(), &budget).await
            })
        };
        // A's message goes through, holding its charge.
        let mut got = vec![0u8; 1541];
        pgwire_a.read_exact(&mut got).await.unwrap();
        assert_eq!(got, query(1536));
        assert_eq!(budget.available_permits(), 0);
        // B waits: its body is not read while A holds the budget.
        let b = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move {
                client_to_server(&mut ours_b, &mut server_b, &PgLimits::default(), &budget).await
            })
        };
        tokio::task::yield_now().await;
        let mut nothing = [0u8; 1];
        let read = futures::FutureExt::now_or_never(pgwire_b.read(&mut nothing));
        assert!(
            read.is_none(),
            "B's message went through while A held the budget"
        );
        // A's session ends: its charge is released and B's message goes through.
        drop(client_a);
        assert_eq!(a.await.unwrap().unwrap(), None);
        let mut got = vec![0u8; 1541];
        pgwire_b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, query(1536));
        drop(client_b);
        assert_eq!(b.await.unwrap().unwrap(), None);
        assert_eq!(budget.available_permits(), 2);
    }

    /// Runs [`client_to_server`] over `sent` (then the client's end of
    /// input), with a 64-byte pipe on both sides; returns what pgwire got
    /// and the last word for the client.
    async fn copy_through(sent: Vec<u8>, limits: PgLimits) -> (Vec<u8>, Option<Vec<u8>>) {
        let (mut client, mut ours) = tokio::io::duplex(64);
        let (mut server, mut pgwire) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            pgwire.read_to_end(&mut got).await.unwrap();
            got
        });
        let budget = Arc::new(Semaphore::new(1024));
        let last_word = client_to_server(&mut ours, &mut server, &limits, &budget)
            .await
            .unwrap();
        drop(server);
        writer.await.unwrap();
        (reader.await.unwrap(), last_word)
    }

    #[tokio::test]
    async fn an_oversize_query_is_streamed_past_and_stood_in_for() {
        let limits = PgLimits {
            max_message_bytes: 4096,
            ..PgLimits::default()
        };
        // Through a 64-byte pipe: the body is never held whole.
        let mut sent = query(10_000);
        sent.extend_from_slice(&query(16));
        let (got, last_word) = copy_through(sent, limits).await;
        assert_eq!(last_word, None, "the session goes on");
        let stand_in = message(
            b'Q',
            &[crate::oversize::stand_in(10_000, 4096).as_bytes(), b"\0"],
        );
        assert_eq!(got[..stand_in.len()], stand_in[..]);
        assert_eq!(
            got[stand_in.len()..],
            query(16)[..],
            "the next message follows"
        );
    }

    #[tokio::test]
    async fn an_oversize_parse_keeps_its_statement_name() {
        let limits = PgLimits {
            max_message_bytes: 4096,
            ..PgLimits::default()
        };
        let parse = message(
            b'P',
            &[b"s1\0", &vec![b' '; 9_000], b"\0", &0i16.to_be_bytes()],
        );
        let (got, last_word) = copy_through(parse, limits).await;
        assert_eq!(last_word, None);
        let text = crate::oversize::stand_in(9_000 + 6, 4096);
        assert_eq!(
            got,
            message(
                b'P',
                &[b"s1\0", text.as_bytes(), b"\0", &0i16.to_be_bytes()]
            )
        );
    }

    #[tokio::test]
    async fn another_oversize_message_ends_the_session_once_read() {
        let limits = PgLimits {
            max_message_bytes: 4096,
            ..PgLimits::default()
        };
        let bind = message(b'B', &[&vec![0u8; 8_000]]);
        let (got, last_word) = copy_through(bind, limits).await;
        assert!(got.is_empty(), "pgwire saw none of it");
        let last_word =
            String::from_utf8_lossy(&last_word.expect("a FATAL for the client")).into_owned();
        assert!(
            last_word.contains("54000") && last_word.contains("over the limit"),
            "{last_word}"
        );
    }
}
