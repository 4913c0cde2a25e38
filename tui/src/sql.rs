//! The SQL view's state: the query being edited (with a cursor), the history
//! ↑/↓ walks, and the last result or error with its scroll position.

use crate::data::Table;
use crate::explorer::PAGE;

/// The example the empty SQL box shows (dimmed) and Enter runs when
/// nothing was typed; typing replaces it.
pub const FIRST_QUERY: &str =
    "SELECT service_name, count(*) AS spans FROM spans GROUP BY 1 ORDER BY 2 DESC";
/// Queries the history keeps.
const HISTORY: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Table(Table),
    Error(String),
}

#[derive(Debug)]
pub struct SqlView {
    input: Vec<char>,
    cursor: usize,
    /// Oldest first.
    history: Vec<String>,
    /// Where ↑/↓ is in the history; `None`: editing a new query.
    recalled: Option<usize>,
    /// The query sent and not yet answered.
    running: Option<String>,
    /// The last answer and the query it answered.
    outcome: Option<(String, Outcome)>,
    /// Keys go to the input (else they scroll the result).
    editing: bool,
    row: usize,
    column: usize,
}

impl Default for SqlView {
    fn default() -> Self {
        Self {
            input: Vec::new(),
            cursor: 0,
            history: Vec::new(),
            recalled: None,
            running: None,
            outcome: None,
            editing: true,
            row: 0,
            column: 0,
        }
    }
}

/// Where the word before `cursor` starts, as readline's Ctrl-W sees words
/// (runs of non-space).
pub(crate) fn word_start(text: &[char], cursor: usize) -> usize {
    let mut i = cursor;
    while i > 0 && text[i - 1].is_whitespace() {
        i -= 1;
    }
    while i > 0 && !text[i - 1].is_whitespace() {
        i -= 1;
    }
    i
}

impl SqlView {
    pub fn input(&self) -> String {
        self.input.iter().collect()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// What the empty box shows in place of a query, if it is empty.
    pub fn placeholder(&self) -> Option<&'static str> {
        self.input.is_empty().then_some(FIRST_QUERY)
    }

    pub fn editing(&self) -> bool {
        self.editing
    }

    pub fn running(&self) -> Option<&str> {
        self.running.as_deref()
    }

    pub fn outcome(&self) -> Option<&(String, Outcome)> {
        self.outcome.as_ref()
    }

    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// First result row and column shown.
    pub fn scroll(&self) -> (usize, usize) {
        (self.row, self.column)
    }

    pub fn set_editing(&mut self, editing: bool) {
        self.editing = editing;
    }

    pub fn type_char(&mut self, c: char) {
        self.input.insert(self.cursor, c);
        self.cursor += 1;
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.input.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.input.len() {
            self.input.remove(self.cursor);
        }
    }

    pub fn cursor_by(&mut self, delta: isize) {
        self.cursor = self
            .cursor
            .saturating_add_signed(delta)
            .min(self.input.len());
    }

    pub fn cursor_to(&mut self, end: bool) {
        self.cursor = if end { self.input.len() } else { 0 };
    }

    /// Ctrl-U: deletes from the start of the line to the cursor.
    pub fn kill_to_start(&mut self) {
        self.input.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Ctrl-K: deletes from the cursor to the end of the line.
    pub fn kill_to_end(&mut self) {
        self.input.truncate(self.cursor);
    }

    /// Ctrl-W: deletes the word before the cursor (and the spaces after it).
    pub fn kill_word(&mut self) {
        let start = word_start(&self.input, self.cursor);
        self.input.drain(start..self.cursor);
        self.cursor = start;
    }

    /// ↑ (`older`) or ↓ through the history.
    pub fn recall(&mut self, older: bool) {
        if self.history.is_empty() {
            return;
        }
        let last = self.history.len() - 1;
        self.recalled = match (self.recalled, older) {
            (None, true) => Some(last),
            (None, false) => None,
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i < last => Some(i + 1),
            (Some(_), false) => None,
        };
        let text = self
            .recalled
            .map(|i| self.history[i].clone())
            .unwrap_or_default();
        self.input = text.chars().collect();
        self.cursor = self.input.len();
    }

    /// The query to send, if none is running; it goes into the history. An
    /// empty box runs the example it shows.
    pub fn submit(&mut self) -> Option<String> {
        if self.running.is_some() {
            return None;
        }
        if self.input().trim().is_empty() {
            self.input = FIRST_QUERY.chars().collect();
            self.cursor = self.input.len();
        }
        let text = self.input().trim().to_owned();
        if self.history.last() != Some(&text) {
            self.history.push(text.clone());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        self.recalled = None;
        self.running = Some(text.clone());
        Some(text)
    }

    /// The answer to `query`.
    pub fn receive(&mut self, query: String, outcome: Outcome) {
        if self.running.as_deref() == Some(query.as_str()) {
            self.running = None;
        }
        self.outcome = Some((query, outcome));
        self.row = 0;
        self.column = 0;
        self.editing = false;
    }

    pub fn scroll_rows(&mut self, delta: isize) {
        let rows = match &self.outcome {
            Some((_, Outcome::Table(t))) => t.rows.len(),
            _ => 0,
        };
        self.row = self
            .row
            .saturating_add_signed(delta)
            .min(rows.saturating_sub(1));
    }

    pub fn scroll_page(&mut self, down: bool) {
        let step = PAGE as isize;
        self.scroll_rows(if down { step } else { -step });
    }

    pub fn scroll_columns(&mut self, delta: isize) {
        let columns = match &self.outcome {
            Some((_, Outcome::Table(t))) => t.columns.len(),
            _ => 0,
        };
        self.column = self
            .column
            .saturating_add_signed(delta)
            .min(columns.saturating_sub(1));
    }
}
