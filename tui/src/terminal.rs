//! The event loop: tick, take what the fetcher brought, hand it the requests,
//! draw, and wait at most 100 ms for a key — so answers and refreshes show
//! without a key press and the screen never waits on the network.

use std::io;
use std::time::{Duration, Instant};

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event};

use crate::app::{App, Msg};
use crate::fetch::Fetcher;
use crate::keys::action_for;

/// How long the loop waits for a key before it looks for answers again.
const POLL: Duration = Duration::from_millis(100);

/// Runs the explorer until the user quits. The terminal is put back as it
/// was on return, and by ratatui's panic hook on a panic.
pub fn run(app: App, fetcher: Fetcher) -> io::Result<()> {
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, app, &fetcher);
    ratatui::restore();
    result
}

fn event_loop(terminal: &mut DefaultTerminal, mut app: App, fetcher: &Fetcher) -> io::Result<()> {
    let start = Instant::now();
    loop {
        let now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        app.update(Msg::Tick { now_ms });
        while let Some(answer) = fetcher.try_next() {
            app.update(Msg::Fetched(answer));
        }
        for request in app.take_requests() {
            fetcher.send(request);
        }
        if app.should_quit() {
            return Ok(());
        }
        terminal.draw(|frame| frame.render_widget(&app, frame.area()))?;
        if event::poll(POLL)?
            && let Event::Key(key) = event::read()?
            && let Some(action) = action_for(key, app.context())
        {
            app.update(Msg::Key(action));
        }
        // A resize needs nothing: the next draw fits the new size.
    }
}
