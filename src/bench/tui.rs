//! `weft bench --only tui`: what a frame of the lineage view costs on a
//! 100 000-span workflow beside a 100-span one, drawn the same way in the
//! same run — the view draws only the rows on screen, so the ratio should
//! stay near one — and what opening and folding such a workflow costs.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use weft_lineage::{BuildOptions, Lineage, build};
use weft_tui::{Action, App, Fetched, Msg};

use super::lineage::workflow;

/// Frames drawn per measurement (each after one move down).
const FRAMES: usize = 500;

fn lineage(spans: usize) -> Lineage {
    let options = BuildOptions {
        now_ns: i64::MAX,
        ..Default::default()
    };
    build(workflow(spans, 10, true), &options)
}

fn opened(lineage: Lineage) -> App {
    let trace = lineage.traces[0];
    let mut app = App::new("bench", true, Some(trace));
    app.update(Msg::Fetched(Fetched::Lineage(trace, Ok(Box::new(lineage)))));
    app.take_requests();
    app
}

/// The time of one frame: a key, then a draw at 160×48, best of three runs.
fn frame(app: &mut App) -> anyhow::Result<Duration> {
    let mut terminal = Terminal::new(TestBackend::new(160, 48))?;
    let mut best = Duration::MAX;
    for _ in 0..3 {
        app.update(Msg::Key(Action::Home));
        let start = Instant::now();
        for _ in 0..FRAMES {
            app.update(Msg::Key(Action::Down));
            terminal.draw(|f| f.render_widget(&*app, f.area()))?;
        }
        best = best.min(start.elapsed() / FRAMES as u32);
    }
    Ok(best)
}

pub fn run(spans: usize) -> anyhow::Result<()> {
    eprintln!("tui: building a 100-span and a {spans}-span workflow ...");
    let small = lineage(100);
    let large = lineage(spans);
    let mut small_app = opened(small);
    let small_frame = frame(&mut small_app)?;
    let start = Instant::now();
    let mut large_app = opened(large);
    let open = start.elapsed();
    let large_frame = frame(&mut large_app)?;
    // Fold the root (everything under it) and unfold it: two relayouts.
    large_app.update(Msg::Key(Action::Home));
    let start = Instant::now();
    large_app.update(Msg::Key(Action::Enter));
    large_app.update(Msg::Key(Action::Enter));
    let fold = start.elapsed() / 2;
    println!();
    println!("| lineage view at 160×48 | time | relative to baseline |");
    println!("|---|---:|---:|");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ratio = |d: Duration| d.as_secs_f64() / small_frame.as_secs_f64();
    println!(
        "| baseline: key + frame, 100-span workflow | {:.0} µs | 1.00x |",
        us(small_frame)
    );
    println!(
        "| key + frame, {spans}-span workflow | {:.0} µs | {:.2}x |",
        us(large_frame),
        ratio(large_frame)
    );
    println!(
        "| open the {spans}-span workflow (tree layout) | {:.1} ms | {:.0}x |",
        open.as_secs_f64() * 1e3,
        ratio(open)
    );
    println!(
        "| fold or unfold its root (relayout) | {:.1} ms | {:.0}x |",
        fold.as_secs_f64() * 1e3,
        ratio(fold)
    );
    Ok(())
}
