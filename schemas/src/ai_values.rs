//! The closed value sets of the AI columns (what a step is, a policy
//! verdict, an approval's state), with their words on the wire. Below
//! `ai_column` (which types the columns by them) and `conventions` (which
//! reads them from attributes), so neither imports the other for them.

/// What an AI step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AiKind {
    Llm,
    Embedding,
    Retrieval,
    Rerank,
    Tool,
    Agent,
    Workflow,
    Policy,
    Approval,
    Guardrail,
    Other,
}

impl AiKind {
    /// Every kind, in documentation order.
    pub const ALL: [AiKind; 11] = [
        AiKind::Llm,
        AiKind::Embedding,
        AiKind::Retrieval,
        AiKind::Rerank,
        AiKind::Tool,
        AiKind::Agent,
        AiKind::Workflow,
        AiKind::Policy,
        AiKind::Approval,
        AiKind::Guardrail,
        AiKind::Other,
    ];

    /// The text stored in the `ai_kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            AiKind::Llm => "llm",
            AiKind::Embedding => "embedding",
            AiKind::Retrieval => "retrieval",
            AiKind::Rerank => "rerank",
            AiKind::Tool => "tool",
            AiKind::Agent => "agent",
            AiKind::Workflow => "workflow",
            AiKind::Policy => "policy",
            AiKind::Approval => "approval",
            AiKind::Guardrail => "guardrail",
            AiKind::Other => "other",
        }
    }

    /// Parses a `weft.kind` value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub(crate) fn from_gen_ai_operation(op: &str) -> Self {
        match op {
            "chat" | "text_completion" | "generate_content" => AiKind::Llm,
            "embeddings" => AiKind::Embedding,
            "retrieval" => AiKind::Retrieval,
            "execute_tool" => AiKind::Tool,
            "invoke_agent" | "create_agent" => AiKind::Agent,
            "invoke_workflow" => AiKind::Workflow,
            _ => AiKind::Other,
        }
    }

    pub(crate) fn from_openinference(kind: &str) -> Self {
        match kind.to_ascii_uppercase().as_str() {
            "LLM" => AiKind::Llm,
            "EMBEDDING" => AiKind::Embedding,
            "RETRIEVER" => AiKind::Retrieval,
            "RERANKER" => AiKind::Rerank,
            "TOOL" => AiKind::Tool,
            "AGENT" => AiKind::Agent,
            "CHAIN" => AiKind::Workflow,
            "GUARDRAIL" => AiKind::Guardrail,
            _ => AiKind::Other,
        }
    }

    pub(crate) fn from_traceloop(kind: &str) -> Self {
        match kind {
            "workflow" | "task" => AiKind::Workflow,
            "agent" => AiKind::Agent,
            "tool" => AiKind::Tool,
            _ => AiKind::Other,
        }
    }
}

/// A policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVerdict {
    Allow,
    Deny,
    NeedsApproval,
}

impl PolicyVerdict {
    /// The text stored in the `policy_verdict` column.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVerdict::Allow => "allow",
            PolicyVerdict::Deny => "deny",
            PolicyVerdict::NeedsApproval => "needs_approval",
        }
    }

    /// Parses a verdict; unknown text is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(PolicyVerdict::Allow),
            "deny" => Some(PolicyVerdict::Deny),
            "needs_approval" => Some(PolicyVerdict::NeedsApproval),
            _ => None,
        }
    }
}

/// The state of a human approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    Requested,
    Granted,
    Denied,
}

impl ApprovalState {
    /// The text stored in the `approval_state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Requested => "requested",
            ApprovalState::Granted => "granted",
            ApprovalState::Denied => "denied",
        }
    }

    /// Parses an approval state; unknown text is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "requested" => Some(ApprovalState::Requested),
            "granted" => Some(ApprovalState::Granted),
            "denied" => Some(ApprovalState::Denied),
            _ => None,
        }
    }
}

macro_rules! serialize_as_str {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    )*};
}
serialize_as_str!(AiKind, PolicyVerdict, ApprovalState);

macro_rules! deserialize_by_parse {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                <$t>::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not a {}", stringify!($t)
                    ))
                })
            }
        }
    )*};
}
deserialize_by_parse!(AiKind, PolicyVerdict, ApprovalState);
