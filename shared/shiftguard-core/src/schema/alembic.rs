//! Reads one Alembic revision file with a real Python parser: its header variables, its
//! shiftguard declarations and the `op.*` operations of `upgrade()`.
//!
//! Nothing here executes Python. Header values must be literals (strings, `None`, tuples or lists
//! of strings), which is what `alembic revision` writes in both its classic (`revision = "…"`) and
//! its type-annotated (`revision: str = "…"`) templates.

use std::collections::{HashMap, HashSet};

use ruff_python_ast::visitor::{Visitor, walk_expr, walk_stmt};
use ruff_python_ast::{Expr, ExprCall, Stmt, StmtFunctionDef};
use ruff_text_size::{Ranged, TextSize};
use thiserror::Error;

use crate::schema::revision::Phase;

/// Module-level variable that declares a revision's phase.
pub const PHASE_VARIABLE: &str = "shiftguard_phase";
/// Module-level variable that declares the oldest build revision a contract revision tolerates.
pub const REQUIRES_APP_VARIABLE: &str = "shiftguard_requires_app_at_least";
/// Module-level variable that turns named lint rules off for this revision.
pub const LINT_DISABLE_VARIABLE: &str = "shiftguard_lint_disable";
const DECLARATION_PREFIX: &str = "shiftguard_";

/// A value with the 1-based line it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: u32,
}

/// Everything shiftguard reads from one revision file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionFile {
    /// `revision`; `None` when the file does not set it (then it is not a revision file).
    pub revision: Option<Located<String>>,
    /// `down_revision`; `None` when the file does not set it at all (`down_revision = None` is
    /// `Some` of an empty list).
    pub down_revision: Option<Located<Vec<String>>>,
    pub branch_labels: Vec<String>,
    pub depends_on: Vec<String>,
    /// First paragraph of the module docstring, as `alembic history` shows it.
    pub message: Option<String>,
    pub declared_phase: Option<Located<Phase>>,
    pub requires_app_at_least: Option<Located<String>>,
    /// `shiftguard_lint_disable`: rule codes or names the lint must not report for this revision.
    pub lint_disable: Option<Located<Vec<String>>>,
    /// Calls on `op` (or on a `batch_op` bound by `with op.batch_alter_table(...)`) in `upgrade()`.
    pub operations: Vec<Operation>,
}

/// One migration operation found in `upgrade()`, reduced to the facts the phase rules need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Operation {
    /// The `op` method name, e.g. `add_column`.
    pub name: String,
    pub line: u32,
    /// The table it acts on, when written as a literal (or given by `batch_alter_table`).
    pub table: Option<String>,
    /// The column it acts on, when written as a literal.
    pub column: Option<String>,
    /// `nullable=` of the column (add_column) or of the change (alter_column), when a literal.
    pub nullable: Option<bool>,
    /// A `server_default=` other than `None` is given.
    pub has_server_default: bool,
    /// `alter_column(new_column_name=…)`.
    pub renames_column: bool,
    /// `alter_column(type_=…)`.
    pub changes_type: bool,
    /// The SQL text of `op.execute(…)`, when it is a literal (or `sa.text(literal)`).
    pub sql: Option<String>,
    /// A fact the phase depends on is not a literal (e.g. `nullable=flag`): not classifiable.
    pub opaque: bool,
    /// The columns `create_table` or `add_column` defines.
    pub columns: Vec<ColumnSpec>,
    /// `rename_table`'s new name, or `alter_column`'s `new_column_name`, when a literal.
    pub new_name: Option<String>,
    /// `create_index` / `drop_index` with `postgresql_concurrently=True`.
    pub concurrently: bool,
    /// Called inside `with op.get_context().autocommit_block():`, outside the migration's
    /// transaction.
    pub autocommit: bool,
}

/// A column as `sa.Column(...)` defines it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    /// The type as written, without module prefixes and spaces (`String(200)`), when given.
    pub type_: Option<String>,
    /// `nullable=` as SQLAlchemy resolves it (default true unless a primary key); `None` when
    /// not a literal.
    pub nullable: Option<bool>,
    /// `server_default=…`, or `Identity()` / `Computed()`: the database fills the column.
    pub has_server_default: bool,
}

/// The operation name recorded for a call whose target cannot be known statically
/// (`globals()[name]()`); it is never classified.
pub const DYNAMIC_CALL: &str = "<dynamic call>";

/// Why a revision file could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlembicFileError {
    /// The file is not valid Python.
    #[error("python syntax error: {message}")]
    Syntax { line: u32, message: String },
    /// A header or declaration holds something other than the literals shiftguard reads.
    #[error("`{name}` must be {expected}")]
    BadValue {
        name: String,
        line: u32,
        expected: &'static str,
    },
    /// A `shiftguard_*` variable that shiftguard does not know (most likely a typo).
    #[error(
        "unknown declaration `{name}` (known: {PHASE_VARIABLE}, {REQUIRES_APP_VARIABLE}, {LINT_DISABLE_VARIABLE})"
    )]
    UnknownDeclaration { name: String, line: u32 },
}

impl AlembicFileError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> u32 {
        match self {
            AlembicFileError::Syntax { line, .. }
            | AlembicFileError::BadValue { line, .. }
            | AlembicFileError::UnknownDeclaration { line, .. } => *line,
        }
    }
}

/// Parses the source text of one revision file.
pub fn parse_revision_file(source: &str) -> Result<RevisionFile, AlembicFileError> {
    // CRLF files: the same lines, so line numbers stay right.
    let normalized;
    let source = if source.contains("\r\n") {
        normalized = source.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        source
    };
    let lines = LineIndex::new(source);
    let module = ruff_python_parser::parse_module(source)
        .map_err(|error| AlembicFileError::Syntax {
            line: lines.line(error.location.start()),
            message: error.error.to_string(),
        })?
        .into_syntax();

    let mut file = RevisionFile {
        message: module_docstring(&module.body).map(first_paragraph),
        ..RevisionFile::default()
    };
    let functions: HashMap<&str, &StmtFunctionDef> = module
        .body
        .iter()
        .filter_map(|stmt| match stmt {
            Stmt::FunctionDef(function) => Some((function.name.as_str(), function)),
            _ => None,
        })
        .collect();
    for stmt in &module.body {
        let (target, value) = match stmt {
            Stmt::Assign(assign) if assign.targets.len() == 1 => {
                (&assign.targets[0], Some(&*assign.value))
            }
            Stmt::AnnAssign(assign) => (&*assign.target, assign.value.as_deref()),
            Stmt::FunctionDef(function) if function.name.as_str() == "upgrade" => {
                let mut finder = OperationFinder {
                    source,
                    lines: &lines,
                    functions: &functions,
                    visited: HashSet::from(["upgrade"]),
                    batch_tables: Vec::new(),
                    autocommit_depth: 0,
                    connections: Vec::new(),
                    contexts: Vec::new(),
                    operations: Vec::new(),
                };
                finder.visit_body(&function.body);
                file.operations = finder.operations;
                continue;
            }
            _ => continue,
        };
        let (Expr::Name(name), Some(value)) = (target, value) else {
            continue;
        };
        let line = lines.line(stmt.start());
        read_header(&mut file, name.id.as_str(), value, line)?;
    }
    Ok(file)
}

fn read_header(
    file: &mut RevisionFile,
    name: &str,
    value: &Expr,
    line: u32,
) -> Result<(), AlembicFileError> {
    let bad = |expected| AlembicFileError::BadValue {
        name: name.to_owned(),
        line,
        expected,
    };
    match name {
        "revision" => {
            let id = string_literal(value).ok_or_else(|| bad("a string literal"))?;
            file.revision = Some(Located {
                value: id.to_owned(),
                line,
            });
        }
        "down_revision" => {
            let parents =
                string_list(value).ok_or_else(|| bad("None, a string or a tuple of strings"))?;
            file.down_revision = Some(Located {
                value: parents,
                line,
            });
        }
        "branch_labels" => {
            file.branch_labels =
                string_list(value).ok_or_else(|| bad("None, a string or a tuple of strings"))?;
        }
        "depends_on" => {
            file.depends_on =
                string_list(value).ok_or_else(|| bad("None, a string or a tuple of strings"))?;
        }
        PHASE_VARIABLE => {
            let phase = string_literal(value)
                .and_then(Phase::parse)
                .ok_or_else(|| bad("\"expand\", \"data\" or \"contract\""))?;
            file.declared_phase = Some(Located { value: phase, line });
        }
        REQUIRES_APP_VARIABLE => {
            let id = string_literal(value).ok_or_else(|| bad("a revision id string"))?;
            file.requires_app_at_least = Some(Located {
                value: id.to_owned(),
                line,
            });
        }
        LINT_DISABLE_VARIABLE => {
            let rules =
                string_list(value).ok_or_else(|| bad("a string or a list of rule codes"))?;
            file.lint_disable = Some(Located { value: rules, line });
        }
        other if other.starts_with(DECLARATION_PREFIX) => {
            return Err(AlembicFileError::UnknownDeclaration {
                name: other.to_owned(),
                line,
            });
        }
        _ => {}
    }
    Ok(())
}

fn module_docstring(body: &[Stmt]) -> Option<&str> {
    match body.first()? {
        Stmt::Expr(expr) => string_literal(&expr.value),
        _ => None,
    }
}

fn first_paragraph(doc: &str) -> String {
    let paragraph = doc.trim().split("\n\n").next().unwrap_or_default();
    paragraph.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn string_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::StringLiteral(literal) => Some(literal.value.to_str()),
        _ => None,
    }
}

/// `None`, a string, or a tuple/list of strings, as Alembic accepts for its header edges.
fn string_list(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::NoneLiteral(_) => Some(Vec::new()),
        Expr::StringLiteral(literal) => Some(vec![literal.value.to_str().to_owned()]),
        Expr::Tuple(tuple) => collect_strings(&tuple.elts),
        Expr::List(list) => collect_strings(&list.elts),
        _ => None,
    }
}

fn collect_strings(elements: &[Expr]) -> Option<Vec<String>> {
    elements
        .iter()
        .map(|element| string_literal(element).map(str::to_owned))
        .collect()
}

/// Collects the schema operations `upgrade()` performs: `op.<name>(…)` calls; `<alias>.<name>(…)`
/// calls where `alias` is bound by `with op.batch_alter_table("table") as alias`; `execute` on a
/// connection from `op.get_bind()`; and the same inside module-level functions that `upgrade()`
/// calls (including Alembic's multidb `upgrade_<engine>()` functions, reached through
/// `globals()[…]()`).
struct OperationFinder<'a, 's> {
    source: &'s str,
    lines: &'s LineIndex,
    functions: &'s HashMap<&'a str, &'a StmtFunctionDef>,
    visited: HashSet<&'a str>,
    /// Batch aliases in scope: (alias name, table).
    batch_tables: Vec<(String, Option<String>)>,
    /// How many `autocommit_block()`s enclose the current statement.
    autocommit_depth: usize,
    /// Names bound to `op.get_bind()`.
    connections: Vec<String>,
    /// Names bound to `op.get_context()`.
    contexts: Vec<String>,
    operations: Vec<Operation>,
}

impl<'a> Visitor<'a> for OperationFinder<'a, '_> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        match stmt {
            Stmt::With(with) => {
                let scope = self.batch_tables.len();
                let autocommit = with
                    .items
                    .iter()
                    .any(|item| self.is_autocommit_block(&item.context_expr));
                self.autocommit_depth += usize::from(autocommit);
                for item in &with.items {
                    self.visit_expr(&item.context_expr);
                    if let (Expr::Call(call), Some(target)) =
                        (&item.context_expr, &item.optional_vars)
                        && let Expr::Name(alias) = &**target
                        && receiver_and_method(call) == Some(("op", "batch_alter_table"))
                    {
                        let table = call
                            .arguments
                            .args
                            .first()
                            .or_else(|| call.arguments.find_keyword("table_name").map(|k| &k.value))
                            .and_then(string_literal);
                        self.batch_tables
                            .push((alias.id.to_string(), table.map(str::to_owned)));
                    }
                }
                self.visit_body(&with.body);
                self.batch_tables.truncate(scope);
                self.autocommit_depth -= usize::from(autocommit);
            }
            Stmt::Assign(assign) => {
                if let [target] = assign.targets.as_slice() {
                    self.bind(target, &assign.value);
                }
                walk_stmt(self, stmt);
            }
            Stmt::AnnAssign(assign) => {
                if let Some(value) = &assign.value {
                    self.bind(&assign.target, value);
                }
                walk_stmt(self, stmt);
            }
            _ => walk_stmt(self, stmt),
        }
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        if let Expr::Call(call) = expr {
            self.visit_call(call);
        }
        walk_expr(self, expr);
    }
}

impl<'a> OperationFinder<'a, '_> {
    fn visit_call(&mut self, call: &'a ExprCall) {
        match &*call.func {
            Expr::Name(name) => {
                if let Some((&key, function)) = self.functions.get_key_value(name.id.as_str())
                    && self.visited.insert(key)
                {
                    self.visit_body(&function.body);
                }
                return;
            }
            Expr::Subscript(_) => {
                let mut entry_points: Vec<(&'a str, &'a StmtFunctionDef)> = self
                    .functions
                    .iter()
                    .filter(|(name, _)| name.starts_with("upgrade_"))
                    .map(|(&name, &function)| (name, function))
                    .collect();
                entry_points.sort_by_key(|(name, _)| *name);
                if entry_points.is_empty() {
                    self.record(call, DYNAMIC_CALL, None);
                }
                for (name, function) in entry_points {
                    if self.visited.insert(name) {
                        self.visit_body(&function.body);
                    }
                }
                return;
            }
            Expr::Attribute(attribute) => {
                // op.get_bind().execute(…)
                if let Expr::Call(inner) = &*attribute.value
                    && receiver_and_method(inner) == Some(("op", "get_bind"))
                    && is_execute(attribute.attr.as_str())
                {
                    self.record(call, "execute", None);
                    return;
                }
            }
            _ => {}
        }
        let Some((receiver, method)) = receiver_and_method(call) else {
            return;
        };
        if is_helper(method) {
            // `op.f(…)`, `batch_op.f(…)`: names, not operations.
        } else if receiver == "op" {
            self.record(call, method, None);
        } else if self.connections.iter().any(|c| c == receiver) && is_execute(method) {
            self.record(call, "execute", None);
        } else if let Some((_, table)) = self
            .batch_tables
            .iter()
            .rev()
            .find(|(alias, _)| alias == receiver)
        {
            let table = table.clone();
            self.record(call, method, Some(table));
        }
    }
}

impl OperationFinder<'_, '_> {
    /// Remembers `name = op.get_bind()` and `name = op.get_context()`.
    fn bind(&mut self, target: &Expr, value: &Expr) {
        if let (Expr::Call(call), Expr::Name(name)) = (value, target) {
            if receiver_and_method(call) == Some(("op", "get_bind")) {
                self.connections.push(name.id.to_string());
            } else if is_get_context(call) {
                self.contexts.push(name.id.to_string());
            }
        }
    }

    /// `op.get_context().autocommit_block()`, or `.autocommit_block()` on a name bound to it.
    fn is_autocommit_block(&self, expr: &Expr) -> bool {
        let Expr::Call(call) = expr else { return false };
        let Expr::Attribute(attribute) = &*call.func else {
            return false;
        };
        let on_context = match &*attribute.value {
            Expr::Call(inner) => is_get_context(inner),
            Expr::Name(name) => self.contexts.iter().any(|c| c == name.id.as_str()),
            _ => false,
        };
        on_context && attribute.attr.as_str() == "autocommit_block"
    }
}

/// `op.get_context()` or `context.get_context()`.
fn is_get_context(call: &ExprCall) -> bool {
    matches!(
        receiver_and_method(call),
        Some(("op" | "context", "get_context"))
    )
}

fn is_execute(method: &str) -> bool {
    matches!(method, "execute" | "exec_driver_sql")
}

/// `op` methods that are not schema operations.
fn is_helper(method: &str) -> bool {
    matches!(
        method,
        "batch_alter_table"
            | "get_context"
            | "get_bind"
            | "f"
            | "inline_literal"
            | "implementation_for"
    )
}

impl OperationFinder<'_, '_> {
    /// `batch_table` is `Some` for a batch operation: the table comes from the `with` and the
    /// positional arguments start one earlier than on `op`.
    fn record(&mut self, call: &ExprCall, method: &str, batch_table: Option<Option<String>>) {
        let args = &call.arguments.args;
        let keyword = |name: &str| call.arguments.find_keyword(name).map(|k| &k.value);
        let is_batch = batch_table.is_some();
        // Positional argument `index` of the `op` form of the call.
        let positional = |index: usize| {
            if is_batch {
                index.checked_sub(1).and_then(|i| args.get(i))
            } else {
                args.get(index)
            }
        };
        let literal = |expr: Option<&Expr>| expr.and_then(string_literal).map(str::to_owned);
        let mut operation = Operation {
            name: method.to_owned(),
            line: self.lines.line(call.start()),
            table: match &batch_table {
                Some(table) => table.clone(),
                None => literal(args.first().or_else(|| keyword("table_name"))),
            },
            autocommit: self.autocommit_depth > 0,
            ..Operation::default()
        };
        match method {
            "add_column" => match positional(1).or_else(|| keyword("column")) {
                Some(Expr::Call(column)) => {
                    let spec = self.column_spec(column, &mut operation.opaque);
                    operation.column = Some(spec.name.clone()).filter(|name| !name.is_empty());
                    operation.nullable = spec.nullable;
                    operation.has_server_default = spec.has_server_default;
                    operation.columns.push(spec);
                }
                _ => operation.opaque = true,
            },
            "create_table" => {
                let mut opaque = false;
                operation.columns = args
                    .iter()
                    .skip(1)
                    .filter_map(|arg| match arg {
                        Expr::Call(column) if callee_name(column) == Some("Column") => {
                            Some(self.column_spec(column, &mut opaque))
                        }
                        _ => None,
                    })
                    .collect();
            }
            "alter_column" | "drop_column" => {
                operation.column = literal(positional(1).or_else(|| keyword("column_name")));
                operation.nullable = literal_bool(keyword("nullable"), &mut operation.opaque);
                operation.has_server_default =
                    keyword("server_default").is_some_and(|value| !is_none(value));
                operation.renames_column =
                    keyword("new_column_name").is_some_and(|value| !is_none(value));
                operation.new_name = literal(keyword("new_column_name"));
                operation.changes_type = keyword("type_").is_some_and(|value| !is_none(value));
            }
            "rename_table" => {
                operation.table = literal(args.first().or_else(|| keyword("old_table_name")));
                operation.new_name = literal(args.get(1).or_else(|| keyword("new_table_name")));
            }
            "create_index"
            | "drop_index"
            | "create_unique_constraint"
            | "create_check_constraint"
            | "create_foreign_key"
            | "create_primary_key"
            | "create_exclude_constraint"
            | "drop_constraint" => {
                // The name comes first; the table second (on `op`) or from the batch block.
                if !is_batch {
                    operation.table = literal(
                        args.get(1)
                            .or_else(|| keyword("table_name"))
                            .or_else(|| keyword("source_table")),
                    );
                }
                operation.concurrently = keyword("postgresql_concurrently")
                    .and_then(bool_literal)
                    .unwrap_or(false);
            }
            "execute" => {
                let statement = args.first().or_else(|| keyword("sqltext"));
                operation.table = None;
                operation.sql = statement.and_then(sql_text).map(str::to_owned);
            }
            _ => {}
        }
        self.operations.push(operation);
    }

    /// Reads `sa.Column("name", Type, ..., nullable=…)`.
    fn column_spec(&self, column: &ExprCall, opaque: &mut bool) -> ColumnSpec {
        let args = &column.arguments.args;
        let keyword = |name: &str| column.arguments.find_keyword(name).map(|k| &k.value);
        let type_expr = keyword("type_").or_else(|| {
            args.get(1)
                .filter(|arg| !matches!(arg, Expr::Call(call) if matches!(callee_name(call), Some("ForeignKey" | "Sequence" | "Identity" | "Computed"))))
        });
        let primary_key = literal_bool(keyword("primary_key"), opaque);
        let nullable = literal_bool(keyword("nullable"), opaque);
        // A server default, or a value the database generates for every row.
        let has_server_default = keyword("server_default").is_some_and(|value| !is_none(value))
            || args.iter().any(|arg| {
                matches!(arg, Expr::Call(call) if matches!(callee_name(call), Some("Identity" | "Computed")))
            });
        ColumnSpec {
            has_server_default,
            name: args
                .first()
                .and_then(string_literal)
                .unwrap_or_default()
                .to_owned(),
            type_: type_expr.map(|expr| normalize_type(&self.source[expr.range()])),
            // SQLAlchemy's Column is nullable unless told otherwise or a primary key.
            nullable: if keyword("nullable").is_some() && nullable.is_none() {
                None
            } else {
                Some(nullable.unwrap_or(primary_key != Some(true)))
            },
        }
    }
}

/// A literal boolean argument; a non-literal one marks the operation opaque.
fn literal_bool(value: Option<&Expr>, opaque: &mut bool) -> Option<bool> {
    let value = value?;
    let literal = bool_literal(value);
    *opaque |= literal.is_none();
    literal
}

/// The called name: `Column` for both `Column(…)` and `sa.Column(…)`.
fn callee_name(call: &ExprCall) -> Option<&str> {
    match &*call.func {
        Expr::Name(name) => Some(name.id.as_str()),
        Expr::Attribute(attribute) => Some(attribute.attr.as_str()),
        _ => None,
    }
}

/// `sa.String(length=200)` -> `String(200)`: the same type however it is spelled.
fn normalize_type(text: &str) -> String {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = String::with_capacity(compact.len());
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        // Drop dotted module prefixes (`sa.`, `sqlalchemy.dialects.postgresql.`).
        let word_end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        let word = &rest[..word_end];
        out.push_str(word.rsplit('.').next().unwrap_or(word));
        rest = &rest[word_end..];
        if let Some(tail) = rest.strip_prefix("(length=") {
            out.push('(');
            rest = tail;
        } else if let Some(c) = rest.chars().next() {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `name.method(…)` -> `(name, method)`.
fn receiver_and_method(call: &ExprCall) -> Option<(&str, &str)> {
    let Expr::Attribute(attribute) = &*call.func else {
        return None;
    };
    let Expr::Name(receiver) = &*attribute.value else {
        return None;
    };
    Some((receiver.id.as_str(), attribute.attr.as_str()))
}

/// A SQL literal, or `text(literal)` / `sa.text(literal)`.
fn sql_text(expr: &Expr) -> Option<&str> {
    if let Some(text) = string_literal(expr) {
        return Some(text);
    }
    let Expr::Call(call) = expr else { return None };
    let is_text = match &*call.func {
        Expr::Name(name) => name.id.as_str() == "text",
        Expr::Attribute(attribute) => attribute.attr.as_str() == "text",
        _ => false,
    };
    if is_text {
        call.arguments.args.first().and_then(string_literal)
    } else {
        None
    }
}

fn bool_literal(expr: &Expr) -> Option<bool> {
    match expr {
        Expr::BooleanLiteral(literal) => Some(literal.value),
        _ => None,
    }
}

fn is_none(expr: &Expr) -> bool {
    matches!(expr, Expr::NoneLiteral(_))
}

/// Byte offset -> 1-based line number.
struct LineIndex {
    starts: Vec<u32>,
}

impl LineIndex {
    fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            source
                .bytes()
                .enumerate()
                .filter(|&(_, byte)| byte == b'\n')
                .map(|(offset, _)| offset as u32 + 1),
        );
        LineIndex { starts }
    }

    fn line(&self, offset: TextSize) -> u32 {
        let offset = u32::from(offset);
        self.starts.partition_point(|&start| start <= offset) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPED: &str = r#""""add display name

Revision ID: b2
Revises: a1
Create Date: 2026-11-25 10:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

revision: str = "b2"
down_revision: Union[str, Sequence[str], None] = "a1"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("users", sa.Column("display_name", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "display_name")
"#;

    #[test]
    fn reads_typed_headers_and_upgrade_operations_only() {
        let file = parse_revision_file(TYPED).expect("parses");
        assert_eq!(file.revision.as_ref().map(|r| r.value.as_str()), Some("b2"));
        assert_eq!(file.revision.as_ref().map(|r| r.line), Some(13));
        assert_eq!(file.down_revision.map(|d| d.value), Some(vec!["a1".into()]));
        assert!(file.branch_labels.is_empty());
        assert_eq!(file.message.as_deref(), Some("add display name"));
        assert_eq!(file.operations.len(), 1, "downgrade() is not read");
        let op = &file.operations[0];
        assert_eq!(op.name, "add_column");
        assert_eq!(op.line, 21);
        assert_eq!(op.table.as_deref(), Some("users"));
        assert_eq!(op.column.as_deref(), Some("display_name"));
        assert_eq!(op.nullable, Some(true));
    }

    #[test]
    fn reads_classic_headers_merges_labels_and_declarations() {
        let source = r#"'''merge heads'''
revision = 'm1'
down_revision = ('a1', 'b2')
branch_labels = ['core']
depends_on = 'x9'
shiftguard_phase = "contract"
shiftguard_requires_app_at_least: str = "b2"

def upgrade():
    pass
"#;
        let file = parse_revision_file(source).expect("parses");
        assert_eq!(
            file.down_revision.map(|d| d.value),
            Some(vec!["a1".into(), "b2".into()])
        );
        assert_eq!(file.branch_labels, vec!["core".to_owned()]);
        assert_eq!(file.depends_on, vec!["x9".to_owned()]);
        assert_eq!(
            file.declared_phase,
            Some(Located {
                value: Phase::Contract,
                line: 6
            })
        );
        assert_eq!(
            file.requires_app_at_least.map(|r| r.value).as_deref(),
            Some("b2")
        );
        assert!(file.operations.is_empty());
    }

    #[test]
    fn batch_operations_take_the_table_from_the_with_block() {
        let source = r#"
revision = "c3"
down_revision = None
def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("email", existing_type=sa.String(), nullable=False)
        batch_op.drop_column("full_name")
    op.execute(sa.text("UPDATE users SET display_name = full_name"))
"#;
        let file = parse_revision_file(source).expect("parses");
        let ops: Vec<_> = file
            .operations
            .iter()
            .map(|op| {
                (
                    op.name.as_str(),
                    op.table.as_deref(),
                    op.column.as_deref(),
                    op.nullable,
                )
            })
            .collect();
        assert_eq!(
            ops,
            vec![
                ("alter_column", Some("users"), Some("email"), Some(false)),
                ("drop_column", Some("users"), Some("full_name"), None),
                ("execute", None, None, None),
            ]
        );
        assert_eq!(
            file.operations[2].sql.as_deref(),
            Some("UPDATE users SET display_name = full_name")
        );
    }

    #[test]
    fn follows_helpers_multidb_entry_points_and_crlf() {
        let source = "\"\"\"drop it\r\n\r\nRevision ID: d1\r\n\"\"\"\r\nrevision = 'd1'\r\ndown_revision = None\r\n\r\ndef upgrade(engine_name=''):\r\n    globals()['upgrade_%s' % engine_name]()\r\n    _shared()\r\n\r\ndef _shared():\r\n    op.create_index('ix', 't', ['a'])\r\n\r\ndef upgrade_engine1():\r\n    op.drop_column('t', 'b')\r\n\r\ndef downgrade_engine1():\r\n    op.add_column('t', sa.Column('b', sa.Integer()))\r\n";
        let file = parse_revision_file(source).expect("parses");
        assert_eq!(file.message.as_deref(), Some("drop it"));
        let ops: Vec<(&str, u32)> = file
            .operations
            .iter()
            .map(|op| (op.name.as_str(), op.line))
            .collect();
        assert_eq!(ops, [("drop_column", 16), ("create_index", 13)]);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "revision = 'a'\ndef upgrade(:\n",
                "line 2: python syntax error",
            ),
            (
                "revision = make_id()\n",
                "line 1: `revision` must be a string literal",
            ),
            (
                "revision = 'a'\ndown_revision = 3\n",
                "line 2: `down_revision` must be None",
            ),
            (
                "revision = 'a'\n\nshiftguard_phase = 'shrink'\n",
                "line 3: `shiftguard_phase` must be \"expand\"",
            ),
            (
                "shiftguard_requires_app = 'a'\n",
                "line 1: unknown declaration `shiftguard_requires_app`",
            ),
        ];
        for (source, expected) in cases {
            let error = parse_revision_file(source).expect_err(source);
            let error = format!("line {}: {error}", error.line());
            assert!(error.starts_with(expected), "{source:?}: {error}");
        }
    }
}
