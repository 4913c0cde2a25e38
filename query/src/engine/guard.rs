//! What a statement may be before it runs: read-only (DDL, DML, COPY and
//! statements refused, on the plan and, for statements that fail to plan, by
//! their first keyword) and shallow enough to plan without a stack overflow.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;

use crate::error::QueryError;

/// Operators one statement may hold. DataFusion parses `a + b + c …`
/// iteratively but plans, optimises, drops and evaluates the resulting tree
/// recursively, one stack frame per level: an unbounded chain aborts the
/// process on a stack overflow. Bounded here, before DataFusion sees it, so
/// such a query gets a clear error; the runtime's 16 MiB thread stacks hold
/// trees of this depth with room to spare.
pub const MAX_SQL_OPERATORS: usize = 1_000;
/// How deeply brackets may nest (function calls, subqueries, parentheses).
pub const MAX_SQL_NESTING: usize = 128;

/// Refuses SQL whose expression trees could be deeper than the limits above,
/// counting on the token stream (the tokenizer is iterative).
pub fn check_depth(sql: &str) -> Result<(), QueryError> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Sql(e.to_string()))?;
    let (mut operators, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    for token in &tokens {
        match token {
            Token::LParen | Token::LBracket => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::Arrow
            | Token::LongArrow => operators += 1,
            Token::Word(w)
                if matches!(
                    w.keyword,
                    Keyword::AND | Keyword::OR | Keyword::NOT | Keyword::CASE | Keyword::WHEN
                ) =>
            {
                operators += 1
            }
            _ => {}
        }
    }
    if operators > MAX_SQL_OPERATORS {
        return Err(QueryError::Sql(format!(
            "the query has {operators} operators; at most {MAX_SQL_OPERATORS} are allowed in one \
             statement: use IN (…) for long lists of alternatives, or split the query"
        )));
    }
    if deepest > MAX_SQL_NESTING {
        return Err(QueryError::Sql(format!(
            "brackets nest {deepest} deep; at most {MAX_SQL_NESTING} levels are allowed"
        )));
    }
    Ok(())
}

/// Refuses `plan` if it would change something.
pub(super) fn refuse_changes(plan: &LogicalPlan) -> Result<(), QueryError> {
    match changes_something(plan)? {
        Some(refused) => Err(read_only(refused)),
        None => Ok(()),
    }
}

pub(super) fn read_only(refused: &str) -> QueryError {
    QueryError::ReadOnly(format!(
        "{refused} is not allowed; Weft's SQL is read-only (SELECT, WITH, EXPLAIN)"
    ))
}

/// What the statement's first keyword says it would change, if anything
/// (for statements that fail to plan, so [`changes_something`] never sees them).
pub(super) fn writes_by_keyword(sql: &str) -> Option<&'static str> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    let first = tokens.iter().find_map(|t| match t {
        Token::Whitespace(_) => None,
        Token::Word(w) => Some(Some(w.keyword)),
        _ => Some(None),
    })??;
    match first {
        Keyword::INSERT | Keyword::UPDATE | Keyword::DELETE | Keyword::MERGE => {
            Some("DML (INSERT, UPDATE, DELETE)")
        }
        Keyword::CREATE | Keyword::DROP | Keyword::ALTER | Keyword::TRUNCATE => {
            Some("DDL (CREATE, DROP)")
        }
        Keyword::COPY => Some("COPY"),
        Keyword::SET | Keyword::PREPARE | Keyword::BEGIN | Keyword::COMMIT => {
            Some("a statement (SET, PREPARE, transactions)")
        }
        _ => None,
    }
}

/// What in `plan` would change state, if anything: DDL (CREATE, DROP), DML
/// (INSERT, UPDATE, DELETE), COPY, or a statement (SET, PREPARE, transactions).
/// Checked on the plan's variants, anywhere in the tree (inside EXPLAIN too).
fn changes_something(plan: &LogicalPlan) -> Result<Option<&'static str>, QueryError> {
    let mut refused = None;
    plan.apply(|node| {
        refused = match node {
            LogicalPlan::Ddl(_) => Some("DDL (CREATE, DROP)"),
            LogicalPlan::Dml(_) => Some("DML (INSERT, UPDATE, DELETE)"),
            LogicalPlan::Copy(_) => Some("COPY"),
            LogicalPlan::Statement(_) => Some("a statement (SET, PREPARE, transactions)"),
            _ => None,
        };
        Ok(if refused.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(refused)
}
