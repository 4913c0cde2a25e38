//! The signals view: per-node load over the last minute, refreshed every
//! second, with sparklines of the samples since the explorer started.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, Widget, Wrap};

use super::{Theme, fit, window_start};
use crate::app::App;
use crate::data::SIGNALS_WINDOW_SECS;
use crate::signals::Sample;

/// Eighths of a cell, lowest to highest.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub(super) fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let signals = app.signals();
    let block = Block::bordered().title(format!(
        " load by node · calls of the last {} min · every second ",
        SIGNALS_WINDOW_SECS / 60
    ));
    if let Some(e) = signals.error() {
        return Paragraph::new(format!("The signals could not be read: {e}"))
            .style(theme.alert())
            .wrap(Wrap { trim: false })
            .block(block)
            .render(area, buf);
    }
    if signals.latest().is_empty() {
        let text = if signals.loaded() {
            format!(
                "No model calls on a node in the last {} minutes (LLM spans with weft.node or host.name).",
                SIGNALS_WINDOW_SECS / 60
            )
        } else {
            "Loading signals …".into()
        };
        return Paragraph::new(text)
            .style(theme.dim())
            .wrap(Wrap { trim: false })
            .block(block)
            .render(area, buf);
    }
    let charts = area.height >= 16;
    let [table_area, chart_area] = if charts {
        Layout::vertical([Constraint::Min(4), Constraint::Length(9)]).areas(area)
    } else {
        [area, Rect::default()]
    };
    let wide = area.width >= 120;
    let trend_width: usize = if wide { 40 } else { 12 };
    let ms = |ns: Option<i64>| ns.map_or("-".into(), |n| format!("{}ms", n / 1_000_000));
    let height = table_area.height.saturating_sub(3) as usize;
    let first = window_start(signals.selected(), height);
    let rows = signals
        .latest()
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, s)| {
            let trend: Vec<u64> = signals
                .history(&s.node)
                .map(|h| h.iter().map(|x| x.calls).collect())
                .unwrap_or_default();
            let selected = i == signals.selected();
            let cursor = if selected { "›" } else { " " };
            let kv = s
                .kv_cache_hit_rate
                .map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
            let row = Row::new([
                Cell::from(format!("{cursor}{}", fit(&s.node, 14))),
                Cell::from(s.calls.to_string()),
                Cell::from(s.errors.to_string()).style(if s.errors > 0 {
                    theme.alert()
                } else {
                    theme.dim()
                }),
                Cell::from(kv),
                Cell::from(format!(
                    "{}/{}",
                    ms(s.queue_wait_p50_ns),
                    ms(s.queue_wait_p95_ns)
                )),
                Cell::from(format!("{}/{}", ms(s.ttft_p50_ns), ms(s.ttft_p95_ns))),
                Cell::from(spark(&trend, trend_width)).style(theme.fg(Color::Cyan)),
            ]);
            if selected {
                row.style(theme.selected())
            } else {
                row
            }
        });
    let widths = [
        Constraint::Length(15),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Length(if wide { 16 } else { 13 }),
        Constraint::Length(if wide { 16 } else { 13 }),
        Constraint::Length(trend_width as u16),
    ];
    Table::new(rows, widths)
        .header(
            Row::new([
                "node",
                "calls",
                "err",
                "kv",
                "queue p50/95",
                "ttft p50/95",
                "calls, trend",
            ])
            .style(theme.title()),
        )
        .block(block)
        .render(table_area, buf);
    if charts && let Some(s) = signals.latest().get(signals.selected()) {
        let history: Vec<Sample> = signals
            .history(&s.node)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        let parts = Layout::horizontal([Constraint::Fill(1); 3]).split(chart_area);
        type Series = (&'static str, fn(&Sample) -> u64, Color);
        let series: [Series; 3] = [
            ("calls", |x| x.calls, Color::Cyan),
            ("kv hit %", |x| x.kv_hit_pct.unwrap_or(0), Color::Green),
            ("ttft p50 ms", |x| x.ttft_p50_ms.unwrap_or(0), Color::Yellow),
        ];
        for ((title, value, colour), part) in series.into_iter().zip(parts.iter()) {
            let width = part.width.saturating_sub(2) as usize;
            let data: Vec<u64> = history
                .iter()
                .skip(history.len().saturating_sub(width))
                .map(value)
                .collect();
            let last = data.last().copied().unwrap_or(0);
            Sparkline::default()
                .data(&data)
                .style(theme.fg(colour))
                .block(Block::bordered().title(format!(" {} · {title} {last} ", s.node)))
                .render(*part, buf);
        }
    }
}

/// The last `width` values as bar glyphs, scaled to their maximum.
fn spark(values: &[u64], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0).max(1);
    tail.iter()
        .map(|v| BARS[((*v * 7) / max) as usize])
        .collect()
}
