//! The closed sets the explorer is driven by: its screens ([`View`]) and
//! what a key can ask for ([`Action`]). Below both `app` (which acts on
//! them) and `keys` (which maps keys to them), so neither imports the other.

/// The screens: four in Tab order, and the diff of two marked workflows
/// (opened from the workflows list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Workflows,
    Lineage,
    Sql,
    Signals,
    Diff,
    Conversation,
}

impl View {
    pub const ALL: [View; 4] = [View::Workflows, View::Lineage, View::Sql, View::Signals];

    pub fn title(self) -> &'static str {
        match self {
            View::Workflows => "workflows",
            View::Lineage => "lineage",
            View::Sql => "sql",
            View::Signals => "signals",
            View::Diff => "diff",
            View::Conversation => "conversation",
        }
    }
}

/// Everything a key can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Left,
    Right,
    Enter,
    /// Esc: leave a prompt or a view.
    Back,
    /// q: leave a view; on the workflows view, quit.
    Close,
    Quit,
    NextView,
    PrevView,
    Show(View),
    Help,
    Filter,
    CycleService,
    CycleIdentity,
    CycleStatus,
    CycleWindow,
    Sort,
    /// Mark (or unmark) the selected workflow for a diff.
    Mark,
    /// Diff the two marked workflows.
    Diff,
    /// Open the selected workflow's conversation.
    Conversation,
    Refresh,
    NextCritical,
    FollowLink,
    SwitchPane,
    DetailUp,
    DetailDown,
    Type(char),
    Backspace,
    Delete,
    /// Ctrl-U: delete to the start of the line.
    KillToStart,
    /// Ctrl-K: delete to the end of the line.
    KillToEnd,
    /// Ctrl-W: delete the word before the cursor.
    KillWord,
}
