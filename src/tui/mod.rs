//! `weft tui`: the terminal explorer, fed from a running Weft's HTTP API
//! ([`Remote`], the same client as `weft sql`) or from a data directory
//! ([`Local`], re-read at every request so it follows a running server).
//! Both turn what they read into the explorer's plain data here, so the
//! `weft-tui` crate sees neither HTTP nor Arrow (`from_json`, `from_arrow`,
//! each value shown alike by `shown`).

mod from_arrow;
mod from_json;
mod shown;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Args;
use weft_lineage::{Lineage, LineagePage, PAGE_NODES};
use weft_query::lineage::Reach;
use weft_query::output::OutputFormat;
use weft_query::workflows::{ConversationQuery, WorkflowQuery};
use weft_query::{QueryEngine, QueryError, SpanSource};
use weft_schemas::TraceId;
use weft_store::Snapshot;
use weft_tui::data::SIGNALS_WINDOW_SECS;
use weft_tui::{
    App, Failure, Fetched, Fetcher, Listed, Msg, NodeSignal, Source, SpanDetail, Table,
};

use crate::client::{Client, Target};

#[derive(Args, Debug)]
pub struct TuiArgs {
    #[command(flatten)]
    pub target: Target,
    /// Open straight on the workflow of this trace (32 hex digits).
    #[arg(long)]
    pub trace: Option<String>,
}

pub fn run(args: TuiArgs) -> anyhow::Result<()> {
    let open = args
        .trace
        .as_deref()
        .map(|t| {
            t.parse::<TraceId>()
                .with_context(|| format!("{t:?} is not a trace id"))
        })
        .transpose()?;
    let (mut source, name): (Box<dyn Source>, String) = match &args.target.data_dir {
        Some(dir) => {
            let settings = crate::config::query_settings_of(args.target.config.as_deref(), None)?;
            (
                Box::new(Local::open(dir.clone(), settings)?),
                dir.display().to_string(),
            )
        }
        None => (
            Box::new(Remote(args.target.client()?)),
            args.target.server.clone(),
        ),
    };
    // A trace asked for is read first, so a wrong id fails here, in one
    // line, rather than inside the screen.
    let first = match open {
        Some(trace) => {
            eprintln!("reconstructing the workflow of trace {trace} ...");
            let lineage = source
                .lineage(trace)
                .map_err(|f| anyhow::anyhow!(f.message))?;
            Some((trace, lineage))
        }
        None => None,
    };
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "weft tui draws on a terminal and stdout is not one; use `weft sql` or `weft lineage` in scripts"
        );
    }
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut app = App::new(name, colour, open);
    if let Some((trace, lineage)) = first {
        app.take_requests();
        app.update(Msg::Fetched(Fetched::Lineage(trace, Ok(Box::new(lineage)))));
    }
    let fetcher = Fetcher::spawn(source).context("cannot start the fetcher thread")?;
    weft_tui::run(app, fetcher).context("terminal error")
}

/// What the explorer shows for an error: its causes in one line, and whether
/// the server could not be reached (then it retries).
fn failure(e: anyhow::Error) -> Failure {
    let unreachable = e.chain().any(|cause| {
        cause
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_connect() || r.is_timeout() || r.is_request())
    });
    Failure {
        message: format!("{e:#}"),
        unreachable,
    }
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::answer(format!("{what}: unexpected answer: {e}")))
}

/// A running Weft, over its HTTP API.
struct Remote(Client);

impl Remote {
    fn get(&self, path: &str, what: &str) -> Result<crate::client::Answer, Failure> {
        self.0.get(path, what).map_err(failure)
    }

    /// A `/api/workflows` answer, with the traces it draws from.
    fn list(&self, path: &str, what: &str) -> Result<Listed, Failure> {
        let answer = self.get(path, what)?;
        let traces = answer
            .headers
            .get(weft_query::api::TRACES_IN_WINDOW)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Ok(Listed {
            workflows: json(&answer.body, what)?,
            traces,
        })
    }
}

impl Source for Remote {
    fn workflows(&mut self, window_secs: u64, limit: usize) -> Result<Listed, Failure> {
        self.list(
            &format!("/api/workflows?since={window_secs}s&limit={limit}"),
            "listing workflows",
        )
    }

    fn conversation(&mut self, id: &str, limit: usize) -> Result<Listed, Failure> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("conversation", id)
            .append_pair("limit", &limit.to_string())
            .finish();
        self.list(
            &format!("/api/workflows?{query}"),
            "listing the conversation",
        )
    }

    fn lineage(&mut self, trace: TraceId) -> Result<Lineage, Failure> {
        let mut pages = Vec::new();
        let mut offset = 0;
        loop {
            let answer = self.get(
                &format!("/api/lineage/{trace}?offset={offset}&limit={PAGE_NODES}"),
                "lineage",
            )?;
            let page: LineagePage = json(&answer.body, "lineage")?;
            let (total, got) = (page.total_nodes, page.nodes.len());
            pages.push(page);
            offset += got;
            if got == 0 || offset >= total {
                break;
            }
        }
        LineagePage::assemble(pages).ok_or_else(|| {
            Failure::answer("the workflow changed while its pages were read; press r")
        })
    }

    fn diff(&mut self, a: TraceId, b: TraceId) -> Result<weft_lineage::RunDiff, Failure> {
        let answer = self.get(&format!("/api/lineage/diff?a={a}&b={b}"), "run diff")?;
        json(&answer.body, "run diff")
    }

    fn trace(&mut self, trace: TraceId) -> Result<Vec<SpanDetail>, Failure> {
        let answer = self.get(&format!("/api/traces/{trace}"), "reading the trace")?;
        Ok(from_json::span_details(&json(&answer.body, "trace")?))
    }

    fn sql(&mut self, text: &str) -> Result<Table, Failure> {
        let answer = self
            .0
            .post_text(
                "/api/sql",
                OutputFormat::Arrow.content_type(),
                text,
                "query",
            )
            .map_err(failure)?;
        let reader = arrow::ipc::reader::StreamReader::try_new(answer.body.as_slice(), None)
            .map_err(|e| Failure::answer(format!("the answer is not Arrow: {e}")))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::answer(format!("the answer broke off: {e}")))?;
        from_arrow::table(&schema, &batches, answer.truncated)
    }

    fn signals(&mut self) -> Result<Vec<NodeSignal>, Failure> {
        let answer = self.get(
            &format!("/api/signals?since={SIGNALS_WINDOW_SECS}s"),
            "reading signals",
        )?;
        Ok(from_json::node_signals(&json(&answer.body, "signals")?))
    }
}

/// A data directory's latest snapshot, swapped in before each request.
struct Latest(Mutex<Snapshot>);

impl SpanSource for Latest {
    fn snapshot(&self) -> Result<Snapshot, weft_store::Error> {
        self.0
            .lock()
            .map(|s| s.clone())
            .map_err(|_| weft_store::Error::Internal("snapshot lock poisoned".into()))
    }
}

/// A data directory, read without a server (beside one, or after it): its
/// spans and its event store.
struct Local {
    dir: PathBuf,
    runtime: tokio::runtime::Runtime,
    latest: Arc<Latest>,
    latest_events: Arc<Latest>,
    engine: QueryEngine,
}

impl Local {
    fn open(dir: PathBuf, settings: weft_query::QuerySettings) -> anyhow::Result<Self> {
        let runtime = crate::runtime()?;
        let (latest, latest_events, engine) = runtime.block_on(async {
            let now = crate::data_dir::read(&dir).await?;
            let latest = Arc::new(Latest(Mutex::new(now.spans)));
            let latest_events = Arc::new(Latest(Mutex::new(now.events)));
            let spans: Arc<dyn SpanSource> = latest.clone();
            let events: Arc<dyn SpanSource> = latest_events.clone();
            let engine = QueryEngine::with_events(spans, events, settings).await?;
            anyhow::Ok((latest, latest_events, engine))
        })?;
        Ok(Self {
            dir,
            runtime,
            latest,
            latest_events,
            engine,
        })
    }

    /// Reads the directory again, then runs `work` on the engine.
    fn run<T>(
        &self,
        work: impl AsyncFnOnce(&QueryEngine) -> Result<T, QueryError>,
    ) -> Result<T, Failure> {
        self.runtime.block_on(async {
            let now = crate::data_dir::read(&self.dir)
                .await
                .map_err(|e| Failure::unreachable(format!("{e:#}")))?;
            if let Ok(mut s) = self.latest.0.lock() {
                *s = now.spans;
            }
            if let Ok(mut s) = self.latest_events.0.lock() {
                *s = now.events;
            }
            work(&self.engine)
                .await
                .map_err(|e| Failure::answer(e.to_string()))
        })
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Source for Local {
    fn workflows(&mut self, window_secs: u64, limit: usize) -> Result<Listed, Failure> {
        let window = i64::try_from(window_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000_000);
        let query = WorkflowQuery {
            since_ns: now_ns().saturating_sub(window),
            until_ns: i64::MAX,
            offset: 0,
            limit,
        };
        self.run(async |e| {
            Ok(Listed {
                workflows: e.workflows(query).await?,
                traces: Some(e.traces_started(query).await?),
            })
        })
    }

    fn conversation(&mut self, id: &str, limit: usize) -> Result<Listed, Failure> {
        let query = ConversationQuery {
            id: id.to_owned(),
            offset: 0,
            limit,
        };
        let page = self.run(async |e| e.conversation(&query).await)?;
        Ok(Listed {
            workflows: page.workflows,
            traces: Some(page.traces),
        })
    }

    fn lineage(&mut self, trace: TraceId) -> Result<Lineage, Failure> {
        self.run(async |e| e.lineage(&trace, Reach::default()).await)
            .map(|r| Arc::unwrap_or_clone(r).lineage)
    }

    fn diff(&mut self, a: TraceId, b: TraceId) -> Result<weft_lineage::RunDiff, Failure> {
        self.run(async |e| e.lineage_diff(&a, &b).await)
    }

    fn trace(&mut self, trace: TraceId) -> Result<Vec<SpanDetail>, Failure> {
        let (batches, events) = self.run(async |e| {
            let spans = e.trace(&trace).await?;
            Ok((spans, e.trace_events(&trace).await?))
        })?;
        from_arrow::span_details(&batches, &events).map_err(|e| Failure::answer(e.to_string()))
    }

    fn sql(&mut self, text: &str) -> Result<Table, Failure> {
        let result = self.run(async |e| e.sql(text).await)?;
        from_arrow::table(&result.schema, &result.batches, result.truncated)
    }

    fn signals(&mut self) -> Result<Vec<NodeSignal>, Failure> {
        let window = i64::try_from(SIGNALS_WINDOW_SECS).unwrap_or(i64::MAX);
        let since = now_ns().saturating_sub(window.saturating_mul(1_000_000_000));
        let batches = self.run(async |e| e.load_signals(since, None).await)?;
        from_arrow::signals_of_batches(&batches).map_err(|e| Failure::answer(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    //! Every view drawn on the demo's workflows at 80×24 and 160×48, fed
    //! through `App::update` exactly as the fetcher would feed it.

    #![allow(clippy::unwrap_used)]

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use weft_lineage::{BuildOptions, build};
    use weft_schemas::{SpanId, TraceId};
    use weft_tui::data::{NodeSignal, SpanDetail, Table};
    use weft_tui::{Action, App, Fetched, Msg, View};

    use crate::workload::fixtures::lineage_spans;
    use crate::workload::{Value, Workflow, workflows};

    const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];
    /// Demo workflows start 200 ms apart, as `weft demo` sends them.
    const STAGGER_NS: i64 = 200_000_000;

    fn demo() -> Vec<Workflow> {
        workflows(30, 42)
    }

    fn lineage_of(n: usize, w: &Workflow) -> weft_lineage::Lineage {
        let mut spans = lineage_spans(w, n as u8);
        for s in &mut spans {
            s.start_ns += n as i64 * STAGGER_NS;
            s.end_ns += n as i64 * STAGGER_NS;
        }
        build(
            spans,
            &BuildOptions {
                now_ns: i64::MAX,
                ..Default::default()
            },
        )
    }

    fn text(v: &Value) -> String {
        match v {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }

    /// What `/api/traces/{id}` gives for the demo workflow `n`: its spans'
    /// attributes and resources.
    fn details(n: usize, w: &Workflow) -> Vec<(TraceId, Vec<SpanDetail>)> {
        let lineage = lineage_of(n, w);
        lineage
            .traces
            .iter()
            .map(|t| {
                let spans = lineage
                    .nodes
                    .iter()
                    .filter(|node| node.span.trace_id == *t)
                    .map(|node| {
                        let i = usize::from(node.span.span_id.as_bytes()[7]) - 1;
                        let p = &w.spans[i];
                        SpanDetail {
                            span_id: Some(node.span.span_id),
                            kind: format!("{:?}", p.kind).to_lowercase(),
                            attributes: p
                                .attributes
                                .iter()
                                .map(|(k, v)| ((*k).to_owned(), text(v)))
                                .collect(),
                            resource: vec![
                                ("service.name".into(), p.service.into()),
                                ("deployment.environment.name".into(), "demo".into()),
                            ],
                            events: Vec::new(),
                            links: Vec::new(),
                        }
                    })
                    .collect();
                (*t, spans)
            })
            .collect()
    }

    /// Per-node load of the first `k` workflows, as `/api/signals` sums it.
    fn signals(k: usize) -> Vec<NodeSignal> {
        let mut by_node: std::collections::BTreeMap<String, (Vec<i64>, u64, u64)> =
            Default::default();
        for w in demo().iter().take(k) {
            for p in &w.spans {
                let attr = |key: &str| p.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
                let Some(Value::Str(node)) = attr("weft.node") else {
                    continue;
                };
                let e = by_node.entry(node.clone()).or_default();
                if let Some(Value::Int(ms)) = attr("weft.ttft_ms") {
                    e.0.push(ms * 1_000_000);
                }
                e.1 += 1;
                if let Some(Value::Bool(true)) = attr("weft.kv_cache.hit") {
                    e.2 += 1;
                }
            }
        }
        by_node
            .into_iter()
            .map(|(node, (mut ttft, calls, hits))| {
                ttft.sort_unstable();
                let p = |q: f64| ttft.get(((ttft.len() as f64 - 1.0) * q) as usize).copied();
                NodeSignal {
                    node,
                    calls,
                    errors: 0,
                    kv_cache_hit_rate: Some(hits as f64 / calls as f64),
                    queue_wait_p50_ns: Some(4_000_000),
                    queue_wait_p95_ns: Some(25_000_000),
                    ttft_p50_ns: p(0.5),
                    ttft_p95_ns: p(0.95),
                }
            })
            .collect()
    }

    /// The explorer after the server has answered the list and the signals.
    fn app() -> App {
        let mut app = App::new("http://127.0.0.1:4319", true, None);
        app.update(Msg::Tick { now_ms: 0 });
        let list: Vec<_> = demo()
            .iter()
            .enumerate()
            .filter_map(|(n, w)| weft_lineage::WorkflowSummary::of(&lineage_of(n, w)))
            .collect();
        app.update(Msg::Fetched(Fetched::Workflows(Ok(list.into()))));
        for k in 1..=demo().len() {
            app.update(Msg::Fetched(Fetched::Signals(Ok(signals(k)))));
        }
        app.take_requests();
        app
    }

    /// Opens the demo workflow `n` as Enter would, and answers its requests.
    fn open(app: &mut App, n: usize) {
        let plan = &demo()[n];
        let lineage = lineage_of(n, plan);
        let trace = weft_lineage::WorkflowSummary::of(&lineage)
            .unwrap()
            .trace_id;
        while app.workflows().selected_workflow().unwrap().trace_id != trace {
            app.update(Msg::Key(Action::Down));
        }
        app.update(Msg::Key(Action::Enter));
        app.update(Msg::Fetched(Fetched::Lineage(trace, Ok(Box::new(lineage)))));
        answer_details(app, n);
    }

    /// Answers the explorer's requests for the details of workflow `n`'s traces.
    fn answer_details(app: &mut App, n: usize) {
        let all = details(n, &demo()[n]);
        for request in app.take_requests() {
            if let weft_tui::Request::Trace(t) = request {
                let spans = all.iter().find(|(id, _)| *id == t).unwrap().1.clone();
                app.update(Msg::Fetched(Fetched::Trace(t, Ok(spans))));
            }
        }
    }

    fn snapshot(name: &str, app: &App) {
        for (w, h) in SIZES {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| f.render_widget(app, f.area())).unwrap();
            insta::assert_snapshot!(format!("tui_{name}_{w}x{h}"), terminal.backend());
        }
    }

    /// c on the selected demo workflow: its conversation, answered with four
    /// turns (demo workflows as the source would list them, oldest first),
    /// the second selected and marked.
    #[test]
    fn conversation_view() {
        let mut app = app();
        // The newest demo workflow that names a conversation (support chats do).
        while app
            .workflows()
            .selected_workflow()
            .unwrap()
            .conversation
            .is_none()
        {
            app.update(Msg::Key(Action::Down));
        }
        let id = app
            .workflows()
            .selected_workflow()
            .unwrap()
            .conversation
            .clone()
            .unwrap();
        app.update(Msg::Key(Action::Conversation));
        assert_eq!(app.view(), View::Conversation);
        assert_eq!(
            app.take_requests(),
            vec![weft_tui::Request::Conversation(id.clone())]
        );
        snapshot("conversation_loading", &app);
        let mut turns: Vec<weft_lineage::WorkflowSummary> = demo()
            .iter()
            .enumerate()
            .take(4)
            .filter_map(|(n, w)| weft_lineage::WorkflowSummary::of(&lineage_of(n, w)))
            .collect();
        turns.sort_by_key(|w| w.start_ns);
        for w in &mut turns {
            w.conversation = Some(id.clone());
        }
        app.update(Msg::Fetched(Fetched::Conversation(
            id,
            Ok(weft_tui::Listed {
                workflows: turns.clone(),
                traces: Some(5),
            }),
        )));
        app.update(Msg::Key(Action::Down));
        app.update(Msg::Key(Action::Mark));
        snapshot("conversation", &app);
        app.update(Msg::Key(Action::Enter));
        assert_eq!(app.view(), View::Lineage);
        assert_eq!(
            app.take_requests(),
            vec![weft_tui::Request::Lineage(turns[1].trace_id)]
        );
    }

    /// Two demo workflows marked on the list (m, m), then d: the diff view
    /// side by side, answered with the diff of their lineages.
    #[test]
    fn diff_view() {
        let mut app = app();
        // Two runs of one kind of workflow.
        let runs: Vec<weft_lineage::Lineage> = demo()
            .iter()
            .enumerate()
            .map(|(n, w)| lineage_of(n, w))
            .collect();
        let name = |l: &weft_lineage::Lineage| weft_lineage::WorkflowSummary::of(l).unwrap().name;
        let a = runs[0].clone();
        let b = runs[1..]
            .iter()
            .find(|l| name(l) == name(&a))
            .unwrap()
            .clone();
        let trace =
            |l: &weft_lineage::Lineage| weft_lineage::WorkflowSummary::of(l).unwrap().trace_id;
        for l in [&a, &b] {
            app.update(Msg::Key(Action::Home));
            for _ in 0..demo().len() {
                if app.workflows().selected_workflow().unwrap().trace_id == trace(l) {
                    break;
                }
                app.update(Msg::Key(Action::Down));
            }
            app.update(Msg::Key(Action::Mark));
        }
        assert_eq!(app.marked(), [trace(&a), trace(&b)]);
        snapshot("workflows_marked", &app);
        app.update(Msg::Key(Action::Diff));
        assert_eq!(app.view(), View::Diff);
        assert_eq!(
            app.take_requests(),
            vec![weft_tui::Request::Diff(trace(&a), trace(&b))]
        );
        let diff = weft_lineage::diff(&a, &b);
        assert!(!diff.is_empty(), "two demo runs differ");
        app.update(Msg::Fetched(Fetched::Diff(
            (trace(&a), trace(&b)),
            Ok(Box::new(diff)),
        )));
        snapshot("diff", &app);
    }

    #[test]
    fn workflows_view() {
        snapshot("workflows", &app());
    }

    #[test]
    fn workflows_view_filtered_with_the_prompt_open() {
        let mut app = app();
        app.update(Msg::Key(Action::Sort));
        app.update(Msg::Key(Action::CycleStatus));
        app.update(Msg::Key(Action::Filter));
        for c in "change".chars() {
            app.update(Msg::Key(Action::Type(c)));
        }
        snapshot("workflows_filtered", &app);
    }

    #[test]
    fn lineage_view_with_a_linked_trace() {
        let mut app = app();
        open(&mut app, 2); // incident triage: resumed in a linked trace
        assert_eq!(app.view(), View::Lineage);
        // Down to the step that resumed the work in the second trace.
        for _ in 0..7 {
            app.update(Msg::Key(Action::Down));
        }
        answer_details(&mut app, 2);
        snapshot("lineage", &app);
    }

    #[test]
    fn lineage_summary_pane() {
        let mut app = app();
        open(&mut app, 0);
        app.update(Msg::Key(Action::SwitchPane));
        snapshot("lineage_summary", &app);
    }

    #[test]
    fn sql_view_opens_empty_with_the_example_dimmed() {
        let mut app = app();
        app.update(Msg::Key(Action::Show(View::Sql)));
        snapshot("sql_empty", &app);
    }

    #[test]
    fn a_capped_workflow_list_says_how_many_traces_started() {
        let mut app = App::new("http://127.0.0.1:4319", true, None);
        app.update(Msg::Tick { now_ms: 0 });
        let one: Vec<_> = demo()
            .iter()
            .enumerate()
            .filter_map(|(n, w)| weft_lineage::WorkflowSummary::of(&lineage_of(n, w)))
            .collect();
        let list: Vec<_> = one
            .iter()
            .cycle()
            .take(weft_tui::workflows::LIMIT)
            .cloned()
            .collect();
        app.update(Msg::Fetched(Fetched::Workflows(Ok(weft_tui::Listed {
            workflows: list,
            traces: Some(1_863),
        }))));
        let mut terminal = Terminal::new(TestBackend::new(160, 10)).unwrap();
        terminal.draw(|f| f.render_widget(&app, f.area())).unwrap();
        let screen = format!("{:?}", terminal.backend());
        assert!(
            screen.contains("200 of the newest 200 (capped; 1,863 traces started)"),
            "{screen}"
        );
    }

    #[test]
    fn sql_view_with_a_result_and_with_an_error() {
        let mut app = app();
        app.update(Msg::Key(Action::Show(View::Sql)));
        app.update(Msg::Key(Action::Enter));
        let query = app.sql().history()[0].clone();
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for w in demo() {
            for p in w.spans {
                *counts.entry(p.service).or_default() += 1;
            }
        }
        let mut rows: Vec<Vec<String>> = counts
            .into_iter()
            .map(|(s, n)| vec![s.to_owned(), n.to_string()])
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r[1].parse::<usize>().unwrap()));
        let table = Table {
            columns: vec!["service_name".into(), "spans".into()],
            rows,
            truncated: None,
        };
        app.update(Msg::Fetched(Fetched::Sql(query, Ok(table))));
        snapshot("sql", &app);
        app.update(Msg::Key(Action::Enter));
        for c in " LIMIT".chars() {
            app.update(Msg::Key(Action::Type(c)));
        }
        app.update(Msg::Key(Action::Enter));
        let query = app.sql().history()[1].clone();
        app.update(Msg::Fetched(Fetched::Sql(
            query,
            Err(weft_tui::Failure::answer(
                "query failed (400 Bad Request): SQL error: ParserError(\"Expected: literal int, found: EOF\")",
            )),
        )));
        snapshot("sql_error", &app);
    }

    #[test]
    fn signals_view() {
        let mut app = app();
        app.update(Msg::Key(Action::Show(View::Signals)));
        snapshot("signals", &app);
    }

    #[test]
    fn help_overlay_on_the_lineage_view() {
        let mut app = app();
        open(&mut app, 1);
        app.update(Msg::Key(Action::Help));
        snapshot("help", &app);
    }

    #[test]
    fn unreachable_server() {
        let mut app = App::new("http://127.0.0.1:4319", true, None);
        app.update(Msg::Tick { now_ms: 0 });
        app.update(Msg::Fetched(Fetched::Workflows(Err(
            weft_tui::Failure::unreachable(
                "cannot reach weft at http://127.0.0.1:4319/api/workflows: connection refused",
            ),
        ))));
        snapshot("unreachable", &app);
    }

    #[test]
    fn signals_from_arrow_match_signals_from_the_apis_json() {
        use arrow::array::{Float64Array, Int64Array, StringArray, UInt64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("node", DataType::Utf8, true),
            Field::new("calls", DataType::Int64, false),
            Field::new("errors", DataType::UInt64, false),
            Field::new("kv_cache_hit_rate", DataType::Float64, true),
            Field::new("queue_wait_p50_ns", DataType::Int64, true),
            Field::new("queue_wait_p95_ns", DataType::Int64, true),
            Field::new("ttft_p50_ns", DataType::Int64, true),
            Field::new("ttft_p95_ns", DataType::Int64, true),
        ]));
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(StringArray::from(vec![
                    Some("gpu-a1"),
                    Some("gpu-b2"),
                    None,
                ])),
                std::sync::Arc::new(Int64Array::from(vec![12, 3, 1])),
                std::sync::Arc::new(UInt64Array::from(vec![1, 0, 0])),
                std::sync::Arc::new(Float64Array::from(vec![Some(0.5), None, None])),
                std::sync::Arc::new(Int64Array::from(vec![Some(10), None, None])),
                std::sync::Arc::new(Int64Array::from(vec![Some(20), None, None])),
                std::sync::Arc::new(Int64Array::from(vec![Some(30), Some(7), None])),
                std::sync::Arc::new(Int64Array::from(vec![Some(40), Some(9), None])),
            ],
        )
        .unwrap();
        let json = weft_query::output::render(
            &weft_query::QueryResult {
                schema,
                batches: vec![batch.clone()],
                truncated: None,
            },
            weft_query::output::OutputFormat::Json,
        )
        .unwrap();
        let from_json = super::from_json::node_signals(&serde_json::from_slice(&json).unwrap());
        let from_arrow = super::from_arrow::signals_of_batches(&[batch]).unwrap();
        assert_eq!(from_arrow.len(), 2, "{from_arrow:?}");
        assert_eq!(from_arrow, from_json);
    }

    /// A span with a value of every OTLP type (on the span, its resource,
    /// an event and a link) and a logged event: the data directory's rows
    /// show exactly what `/api/traces/{id}`'s OTLP/JSON shows.
    #[test]
    fn span_details_from_rows_equal_those_from_otlp_json() {
        use std::sync::Arc;
        use weft_schemas::{
            AttrValue, EVENT_BODY_KEY, Span, SpanKind, SpanLink, StatusCode, spans_to_batch,
        };
        let every = || {
            vec![
                ("s".to_owned(), AttrValue::Str("text".into())),
                ("b".to_owned(), AttrValue::Bool(true)),
                ("i".to_owned(), AttrValue::Int(-7)),
                ("d".to_owned(), AttrValue::Double(0.25)),
                ("big".to_owned(), AttrValue::Double(1e21)),
                ("bytes".to_owned(), AttrValue::Bytes(vec![0, 1, 254])),
                (
                    "list".to_owned(),
                    AttrValue::Array(vec![AttrValue::Str("a".into()), AttrValue::Int(2)]),
                ),
                (
                    "nested".to_owned(),
                    AttrValue::Array(vec![AttrValue::Array(vec![]), AttrValue::Empty]),
                ),
                (
                    "kv".to_owned(),
                    AttrValue::KvList(vec![("content".into(), AttrValue::Str("hi".into()))]),
                ),
                ("none".to_owned(), AttrValue::Empty),
            ]
        };
        let trace = TraceId::try_from(&[7u8; 16][..]).unwrap();
        let id = |n: u8| SpanId::try_from(&[n; 8][..]).unwrap();
        let span = |n: u8, parent: Option<SpanId>, name: &str, attributes| Span {
            trace_id: trace,
            span_id: id(n),
            parent_span_id: parent,
            trace_state: String::new(),
            name: name.to_owned(),
            kind: SpanKind::Client,
            start_time_unix_nano: 1_000 + i64::from(n),
            end_time_unix_nano: 2_000,
            status_code: StatusCode::Ok,
            status_message: String::new(),
            service_name: Some("svc".into()),
            resource_attributes: Arc::new(every()),
            scope_name: String::new(),
            scope_version: String::new(),
            attributes,
            events: Vec::new(),
            links: Vec::new(),
            ai: Default::default(),
        };
        let mut root = span(1, None, "root", every());
        root.events.push(weft_schemas::SpanEvent {
            time_unix_nano: 1_500,
            name: "exception".into(),
            attributes: every(),
        });
        root.links.push(SpanLink {
            trace_id: trace,
            span_id: id(9),
            trace_state: String::new(),
            attributes: every(),
        });
        let child = span(2, Some(id(1)), "child", Vec::new());
        let logged = span(
            3,
            Some(id(1)),
            "gen_ai.choice",
            vec![(
                EVENT_BODY_KEY.to_owned(),
                AttrValue::KvList(vec![("content".into(), AttrValue::Str("ok".into()))]),
            )],
        );
        let batches = [spans_to_batch(&[root, child]).unwrap()];
        let events = [spans_to_batch(&[logged]).unwrap()];
        let json = weft_otlp::traces_data_json_with_events(&batches, &events).unwrap();
        let by_id = |mut d: Vec<SpanDetail>| {
            d.sort_by_key(|s| s.span_id);
            d
        };
        let from_json = by_id(super::from_json::span_details(&json));
        let from_rows = by_id(super::from_arrow::span_details(&batches, &events).unwrap());
        assert_eq!(from_rows.len(), 2);
        assert_eq!(from_rows[0].events.len(), 2, "{:?}", from_rows[0].events);
        assert_eq!(from_rows, from_json);
        let shown = |k: &str| {
            from_rows[0]
                .attributes
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(shown("list").as_deref(), Some("[a, 2]"));
        assert_eq!(shown("bytes").as_deref(), Some("0001fe"));
        assert_eq!(shown("kv").as_deref(), Some(r#"{"content":"hi"}"#));
        assert_eq!(shown("none").as_deref(), Some(""));
    }

    #[test]
    fn otlp_json_becomes_span_details() {
        let data = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
                "kind": 3,
                "attributes": [
                    {"key": "n", "value": {"intValue": "7"}},
                    {"key": "ok", "value": {"boolValue": true}},
                    {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}}
                ],
                "events": [{"timeUnixNano": "17", "name": "gen_ai.choice",
                            "attributes": [{"key": "index", "value": {"intValue": "0"}},
                                           {"key": "body", "value": {"kvlistValue": {"values": [
                                               {"key": "content", "value": {"stringValue": "hi"}},
                                               {"key": "n", "value": {"intValue": "2"}},
                                               {"key": "tags", "value": {"arrayValue": {"values": [
                                                   {"kvlistValue": {"values": []}}]}}}]}}}]}],
                "links": [{"traceId": "0af7651916cd43dd8448eb211c80319d", "spanId": "b7ad6b7169203332"}]
            }]}]
        }]});
        let spans = super::from_json::span_details(&data);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(
            s.span_id,
            Some("b7ad6b7169203331".parse::<SpanId>().unwrap())
        );
        assert_eq!(s.kind, "client");
        let attrs: Vec<(&str, &str)> = s
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(attrs, [("n", "7"), ("ok", "true"), ("list", "[a]")]);
        assert_eq!(s.resource, [("service.name".to_owned(), "svc".to_owned())]);
        assert_eq!(
            (s.events[0].time_ns, s.events[0].name.as_str()),
            (17, "gen_ai.choice")
        );
        // A structured body reads as SQL and lineage show it, not as OTLP/JSON.
        assert_eq!(
            s.events[0].attributes[1],
            (
                "body".to_owned(),
                r#"{"content":"hi","n":2,"tags":[{}]}"#.to_owned()
            )
        );
        assert_eq!(
            s.links[0].trace_id,
            Some(
                "0af7651916cd43dd8448eb211c80319d"
                    .parse::<TraceId>()
                    .unwrap()
            )
        );
    }
}
