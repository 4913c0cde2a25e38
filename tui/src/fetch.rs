//! The background fetcher: one thread that takes [`Request`]s, asks the
//! [`Source`], and sends back what it [`Fetched`]. The UI thread only ever
//! sends and polls, so a slow or dead server never freezes the screen.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use crate::data::{Fetched, Request, Source};

/// The UI's end of the fetcher thread.
pub struct Fetcher {
    requests: Option<Sender<Request>>,
    answers: Receiver<Fetched>,
    thread: Option<JoinHandle<()>>,
}

impl Fetcher {
    /// Starts the thread that answers from `source`.
    pub fn spawn(mut source: Box<dyn Source>) -> std::io::Result<Self> {
        let (requests, inbox) = channel::<Request>();
        let (outbox, answers) = channel();
        let thread = std::thread::Builder::new()
            .name("weft-tui-fetch".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    // What queued up while the last answer was fetched, each
                    // asked once: a refresh that fell behind is not repeated.
                    let mut batch = vec![first];
                    loop {
                        match inbox.try_recv() {
                            Ok(r) if !batch.contains(&r) => batch.push(r),
                            Ok(_) => {}
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => return,
                        }
                    }
                    for request in batch {
                        if outbox.send(source.fetch(request)).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(Self {
            requests: Some(requests),
            answers,
            thread: Some(thread),
        })
    }

    pub fn send(&self, request: Request) {
        if let Some(tx) = &self.requests {
            // The thread only stops when this end is dropped.
            let _ = tx.send(request);
        }
    }

    /// An answer, if one has arrived.
    pub fn try_next(&self) -> Option<Fetched> {
        self.answers.try_recv().ok()
    }
}

impl Drop for Fetcher {
    /// Stops the thread without waiting for a request in progress: a hung
    /// server must not keep the terminal from being given back.
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take()
            && t.is_finished()
        {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::data::{Failure, NodeSignal, SpanDetail, Table};
    use std::time::{Duration, Instant};
    use weft_lineage::Lineage;
    use weft_schemas::TraceId;

    /// Answers SQL with the text it got: says it started, then waits for
    /// the gate to open.
    struct Echo {
        started: Sender<()>,
        gate: Receiver<()>,
    }

    impl Source for Echo {
        fn workflows(&mut self, _: u64, _: usize) -> Result<crate::data::Listed, Failure> {
            Err(Failure::unreachable("down"))
        }
        fn conversation(&mut self, _: &str, _: usize) -> Result<crate::data::Listed, Failure> {
            Err(Failure::answer("no"))
        }
        fn lineage(&mut self, _: TraceId) -> Result<Lineage, Failure> {
            Err(Failure::answer("no"))
        }
        fn diff(&mut self, _: TraceId, _: TraceId) -> Result<weft_lineage::RunDiff, Failure> {
            Err(Failure::answer("no"))
        }
        fn trace(&mut self, _: TraceId) -> Result<Vec<SpanDetail>, Failure> {
            Ok(Vec::new())
        }
        fn sql(&mut self, text: &str) -> Result<Table, Failure> {
            self.started.send(()).unwrap();
            self.gate.recv().unwrap();
            Ok(Table {
                columns: vec![text.to_owned()],
                ..Table::default()
            })
        }
        fn signals(&mut self) -> Result<Vec<NodeSignal>, Failure> {
            Ok(Vec::new())
        }
    }

    fn wait(f: &Fetcher) -> Fetched {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(a) = f.try_next() {
                return a;
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn answers_arrive_in_order_and_queued_repeats_are_asked_once() {
        let (gate, gate_rx) = channel();
        let (started_tx, started) = channel();
        let f = Fetcher::spawn(Box::new(Echo {
            started: started_tx,
            gate: gate_rx,
        }))
        .unwrap();
        f.send(Request::Sql("a".into()));
        started.recv().unwrap();
        // Queued while "a" waits at the gate: the repeat of "b" is dropped.
        f.send(Request::Sql("b".into()));
        f.send(Request::Sql("b".into()));
        f.send(Request::Workflows {
            window_secs: 60,
            limit: 5,
        });
        assert!(f.try_next().is_none(), "nothing before the source answers");
        gate.send(()).unwrap();
        started.recv().unwrap();
        gate.send(()).unwrap();
        let texts: Vec<String> = (0..2)
            .map(|_| match wait(&f) {
                Fetched::Sql(text, Ok(_)) => text,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["a", "b"]);
        // A second "b" would wait at the gate, which stays shut, and the
        // workflows answer queued after it would never come.
        match wait(&f) {
            Fetched::Workflows(Err(e)) => assert!(e.unreachable),
            other => panic!("{other:?}"),
        }
        assert!(started.try_recv().is_err(), "the second b was not asked");
    }
}
