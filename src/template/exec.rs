//! The evaluator: Go's `text/template/exec.go` over JSON values.

use std::rc::Rc;

use serde_json::Value;

use super::format::{self, Num, number, type_name};
use super::parse::{Branch, Command, Node, Number, Operand, Pipe, line_of};
use super::types::{ANY, GoType};
use super::{MAX_OUTPUT, TemplateError};

/// Evaluation stops after this many steps (nodes, commands, iterations),
/// so `{{range 1000000000000}}{{end}}` cannot hang the CLI.
const MAX_STEPS: u64 = 10_000_000;

/// The Go type of a value during evaluation (`GoType::Any` when untyped).
type Ty = &'static GoType;

/// A value during evaluation: Go's invalid `reflect.Value` (a missing map
/// entry, printed `<no value>`), data borrowed from the input, or a value
/// the template computed; the latter two with their Go type.
#[derive(Debug, Clone)]
pub(super) enum Val<'a> {
    Missing,
    Ref(&'a Value, Ty),
    Own(Rc<Value>, Ty),
}

impl<'a> Val<'a> {
    fn own(value: Value) -> Self {
        Val::Own(Rc::new(value), &ANY)
    }

    /// The zero value of a type (JSON null stands for it).
    fn zero(ty: Ty) -> Self {
        Val::Own(Rc::new(Value::Null), ty)
    }

    fn get(&self) -> Option<&Value> {
        match self {
            Val::Missing => None,
            Val::Ref(v, _) => Some(v),
            Val::Own(v, _) => Some(v),
        }
    }

    fn ty(&self) -> Ty {
        match self {
            Val::Missing => &ANY,
            Val::Ref(_, ty) | Val::Own(_, ty) => ty,
        }
    }

    /// The value with its type, as `fmt` functions take it.
    fn typed(&self) -> format::Typed {
        (self.to_value(), self.ty())
    }

    /// Null for `Missing`, as Go passes an invalid value to `any` parameters.
    fn to_value(&self) -> Value {
        self.get().cloned().unwrap_or(Value::Null)
    }

    fn is_nil(&self) -> bool {
        matches!(self.get(), None | Some(Value::Null))
    }

    /// A child of this value, borrowed when the parent is borrowed.
    fn child(&self, pick: impl Fn(&Value) -> Option<&Value>) -> Option<Val<'a>> {
        self.child_typed(pick, &ANY)
    }

    /// A child of this value of Go type `ty`.
    fn child_typed(&self, pick: impl Fn(&Value) -> Option<&Value>, ty: Ty) -> Option<Val<'a>> {
        match self {
            Val::Missing => None,
            Val::Ref(v, _) => pick(v).map(|c| Val::Ref(c, ty)),
            Val::Own(v, _) => pick(v).map(|c| Val::Own(Rc::new(c.clone()), ty)),
        }
    }

    /// The element type of a typed slice or map, `Any` otherwise.
    fn elem_ty(&self) -> Ty {
        match self.ty() {
            GoType::Slice(_, elem) | GoType::Map(_, _, elem) => elem,
            _ => &ANY,
        }
    }
}

/// Go's truth: false, 0, nil and empty strings, arrays and maps are false.
pub(super) fn is_true(val: &Val<'_>) -> bool {
    if matches!(val.ty(), GoType::Struct(..) | GoType::EmptyStruct) && val.get().is_some() {
        // Go's structs are always true.
        return true;
    }
    match val.get() {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(v @ Value::Number(_)) => match number(v) {
            Some(Num::Int(i)) => i != 0,
            Some(Num::Float(f)) => f != 0.0,
            None => false,
        },
    }
}

/// An evaluation error before it is located in the template text.
pub(super) struct ExecError {
    pos: usize,
    context: String,
    message: String,
}

type Result<T> = std::result::Result<T, ExecError>;

fn fail<T>(node: &impl std::fmt::Display, pos: usize, message: impl Into<String>) -> Result<T> {
    Err(ExecError {
        pos,
        context: node.to_string(),
        message: message.into(),
    })
}

enum Flow {
    Normal,
    Break,
    Continue,
}

/// Parameter kinds of the builtin functions, checked like Go's reflection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    Any,
    Str,
    Int,
    Strs,
}

/// The functions templates may call: Go's builtins and Docker's additions.
pub(super) const FUNCTIONS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print",
    "printf", "println", "html", "js", "urlquery", "json", "split", "join", "title", "lower",
    "upper", "pad", "truncate",
];

/// Fixed parameters and whether more of the last kind may follow.
fn signature(name: &str) -> (&'static [Param], Option<Param>) {
    use Param::{Any, Int, Str, Strs};
    match name {
        "and" | "or" | "index" | "slice" | "eq" => (&[Any], Some(Any)),
        "not" | "len" | "json" => (&[Any], None),
        "ne" | "lt" | "le" | "gt" | "ge" => (&[Any, Any], None),
        "print" | "println" | "html" | "js" | "urlquery" => (&[], Some(Any)),
        "printf" => (&[Str], Some(Any)),
        "split" => (&[Str, Str], None),
        "join" => (&[Strs, Str], None),
        "pad" => (&[Str, Int, Int], None),
        "truncate" => (&[Str, Int], None),
        // title, lower, upper
        _ => (&[Str], None),
    }
}

pub(super) struct State<'a> {
    vars: Vec<(String, Val<'a>)>,
    out: String,
    steps: u64,
}

/// Runs a parsed template over `data`.
pub(super) fn execute(
    text: &str,
    nodes: &[Node],
    data: &Value,
    ty: &'static GoType,
) -> std::result::Result<String, TemplateError> {
    let mut state = State {
        vars: vec![("$".to_owned(), Val::Ref(data, ty))],
        out: String::new(),
        steps: 0,
    };
    match state.walk(&Val::Ref(data, ty), nodes) {
        Ok(_) => Ok(state.out),
        Err(e) => {
            let line = line_of(text, e.pos);
            let line_start = text
                .get(..e.pos)
                .and_then(|t| t.rfind('\n'))
                .map_or(0, |i| i + 1);
            Err(TemplateError::Exec {
                line,
                column: e.pos.saturating_sub(line_start),
                context: e.context,
                message: e.message,
            })
        }
    }
}

impl<'a> State<'a> {
    fn step(&mut self, node: &impl std::fmt::Display, pos: usize) -> Result<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return fail(
                node,
                pos,
                format!("exceeded maximum template steps ({MAX_STEPS})"),
            );
        }
        Ok(())
    }

    fn write(&mut self, s: &str, node: &impl std::fmt::Display, pos: usize) -> Result<()> {
        if self.out.len() + s.len() > MAX_OUTPUT {
            return fail(node, pos, format!("output exceeds {MAX_OUTPUT} bytes"));
        }
        self.out.push_str(s);
        Ok(())
    }

    fn walk(&mut self, dot: &Val<'a>, list: &[Node]) -> Result<Flow> {
        for node in list {
            match node {
                Node::Text(pos, text) => {
                    // Go's text node prints as its text.
                    self.step(text, *pos)?;
                    self.write(text, text, *pos)?;
                }
                Node::Action(pipe) => {
                    self.step(pipe, pipe.pos)?;
                    let val = self.eval_pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        let printed = match val.get() {
                            None => "<no value>".to_owned(),
                            Some(v) => format::action_v(v, val.ty()),
                        };
                        self.write(&printed, pipe, pipe.pos)?;
                    }
                }
                Node::If(branch) => match self.walk_if_or_with(false, dot, branch)? {
                    Flow::Normal => {}
                    flow => return Ok(flow),
                },
                Node::With(branch) => match self.walk_if_or_with(true, dot, branch)? {
                    Flow::Normal => {}
                    flow => return Ok(flow),
                },
                Node::Range(branch) => self.walk_range(dot, branch)?,
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk_if_or_with(&mut self, with: bool, dot: &Val<'a>, branch: &Branch) -> Result<Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &branch.pipe)?;
        let flow = if is_true(&val) {
            self.walk(if with { &val } else { dot }, &branch.list)?
        } else if let Some(else_list) = &branch.else_list {
            self.walk(dot, else_list)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn walk_range(&mut self, dot: &Val<'a>, branch: &Branch) -> Result<()> {
        let pipe = &branch.pipe;
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, pipe)?;
        let items: Vec<(Val<'a>, Val<'a>)> = match val.get() {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => (0..items.len())
                .filter_map(|i| {
                    Some((
                        Val::own(Value::from(i)),
                        val.child_typed(|v| v.get(i), val.elem_ty())?,
                    ))
                })
                .collect(),
            Some(Value::Object(map)) if !matches!(val.ty(), GoType::Struct(..)) => {
                format::sorted(map)
                    .into_iter()
                    .filter_map(|(key, _)| {
                        let key = key.clone();
                        let elem = val.child_typed(|v| v.get(&key), val.elem_ty())?;
                        Some((Val::own(Value::String(key)), elem))
                    })
                    .collect()
            }
            Some(v @ Value::Number(_)) => match number(v) {
                Some(Num::Int(n)) => {
                    if n > i128::from(MAX_STEPS) {
                        return fail(
                            pipe,
                            pipe.pos,
                            format!("exceeded maximum template steps ({MAX_STEPS})"),
                        );
                    }
                    (0..n.max(0))
                        .map(|i| {
                            let i = Val::own(Value::from(i64::try_from(i).unwrap_or(0)));
                            (i.clone(), i)
                        })
                        .collect()
                }
                _ => {
                    return fail(
                        pipe,
                        pipe.pos,
                        format!("range can't iterate over {}", format::to_v(v)),
                    );
                }
            },
            Some(v) => {
                return fail(
                    pipe,
                    pipe.pos,
                    format!("range can't iterate over {}", format::to_v(v)),
                );
            }
        };
        if items.is_empty() {
            if let Some(else_list) = &branch.else_list {
                self.walk(dot, else_list)?;
            }
            self.vars.truncate(mark);
            return Ok(());
        }
        let inner = self.vars.len();
        for (index, elem) in items {
            self.step(pipe, pipe.pos)?;
            match pipe.decl.as_slice() {
                [] => {}
                [one] => {
                    if pipe.is_assign {
                        self.set_var(one, elem.clone(), pipe)?;
                    } else {
                        self.set_top_var(1, elem.clone());
                    }
                }
                [first, second, ..] => {
                    if pipe.is_assign {
                        self.set_var(first, index, pipe)?;
                        self.set_var(second, elem.clone(), pipe)?;
                    } else {
                        self.set_top_var(1, elem.clone());
                        self.set_top_var(2, index);
                    }
                }
            }
            let flow = self.walk(&elem, &branch.list)?;
            self.vars.truncate(inner);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn set_top_var(&mut self, n: usize, val: Val<'a>) {
        let len = self.vars.len();
        if let Some(slot) = len.checked_sub(n).and_then(|i| self.vars.get_mut(i)) {
            slot.1 = val;
        }
    }

    fn set_var(&mut self, name: &str, val: Val<'a>, pipe: &Pipe) -> Result<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = val;
                Ok(())
            }
            None => fail(pipe, pipe.pos, format!("undefined variable: {name}")),
        }
    }

    fn var_value(&self, name: &str, node: &Operand) -> Result<Val<'a>> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => fail(node, node.pos(), format!("undefined variable: {name}")),
        }
    }

    fn eval_pipeline(&mut self, dot: &Val<'a>, pipe: &Pipe) -> Result<Val<'a>> {
        let mut value: Option<Val<'a>> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Val::Missing);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, value.clone(), pipe)?;
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(args: &[Operand], final_val: Option<&Val<'a>>) -> Result<()> {
        if let Some(first) = args.first()
            && (args.len() > 1 || final_val.is_some())
        {
            return fail(
                first,
                first.pos(),
                format!("can't give argument to non-function {first}"),
            );
        }
        Ok(())
    }

    fn eval_command(
        &mut self,
        dot: &Val<'a>,
        cmd: &Command,
        final_val: Option<Val<'a>>,
    ) -> Result<Val<'a>> {
        self.step(cmd, cmd.pos)?;
        let Some(first) = cmd.args.first() else {
            return fail(cmd, cmd.pos, "empty command");
        };
        match first {
            Operand::Field { idents, .. } => {
                Self::eval_field_chain(dot.clone(), first, idents, &cmd.args, final_val.as_ref())
            }
            Operand::Chain { node, fields, .. } => {
                if matches!(**node, Operand::Nil(_)) {
                    return fail(
                        first,
                        first.pos(),
                        format!("indirection through explicit nil in {first}"),
                    );
                }
                let receiver = self.eval_arg(dot, node)?;
                Self::eval_field_chain(receiver, first, fields, &cmd.args, final_val.as_ref())
            }
            Operand::Identifier { name, .. } => {
                self.eval_function(dot, name, first, cmd, final_val)
            }
            Operand::Pipe(pipe) => {
                Self::not_a_function(&cmd.args, final_val.as_ref())?;
                self.eval_pipeline(dot, pipe)
            }
            Operand::Variable { idents, .. } => {
                let value = self.var_value(idents.first().map_or("$", String::as_str), first)?;
                if idents.len() == 1 {
                    Self::not_a_function(&cmd.args, final_val.as_ref())?;
                    return Ok(value);
                }
                Self::eval_field_chain(
                    value,
                    first,
                    idents.get(1..).unwrap_or(&[]),
                    &cmd.args,
                    final_val.as_ref(),
                )
            }
            Operand::Nil(pos) => fail(first, *pos, "nil is not a command"),
            _ => {
                Self::not_a_function(&cmd.args, final_val.as_ref())?;
                self.eval_arg(dot, first)
            }
        }
    }

    fn eval_field_chain(
        mut receiver: Val<'a>,
        node: &Operand,
        idents: &[String],
        args: &[Operand],
        final_val: Option<&Val<'a>>,
    ) -> Result<Val<'a>> {
        let Some((last, init)) = idents.split_last() else {
            return Ok(receiver);
        };
        for ident in init {
            receiver = Self::eval_field(&receiver, ident, node, false)?;
        }
        Self::eval_field(&receiver, last, node, args.len() > 1 || final_val.is_some())
    }

    fn eval_field(
        receiver: &Val<'a>,
        name: &str,
        node: &Operand,
        has_args: bool,
    ) -> Result<Val<'a>> {
        if *receiver.ty() != GoType::Any && receiver.get().is_some() {
            return Self::eval_typed_field(receiver, name, node, has_args);
        }
        match receiver.get() {
            // Go returns "no value" for fields of nil maps and missing entries.
            None | Some(Value::Null) => Ok(Val::Missing),
            Some(Value::Object(map)) => {
                if has_args {
                    return fail(
                        node,
                        node.pos(),
                        format!("{name} is not a method but has arguments"),
                    );
                }
                if !map.contains_key(name) {
                    return fail(
                        node,
                        node.pos(),
                        format!("map has no entry for key {}", format::quote(name)),
                    );
                }
                Ok(receiver.child(|v| v.get(name)).unwrap_or(Val::Missing))
            }
            Some(v) => fail(
                node,
                node.pos(),
                format!("can't evaluate field {name} in type {}", type_name(v)),
            ),
        }
    }

    /// A field of a typed value, as Go's `evalField` finds it: a struct's
    /// field (absent from the JSON: its zero value), through a pointer
    /// (nil: an error), or a map's entry (absent: no value, as Docker's
    /// typed pass does not set `missingkey=error`).
    fn eval_typed_field(
        receiver: &Val<'a>,
        name: &str,
        node: &Operand,
        has_args: bool,
    ) -> Result<Val<'a>> {
        let ty = receiver.ty();
        let value = receiver.get().unwrap_or(&Value::Null);
        let (ty, pointer) = match ty {
            GoType::Pointer(inner) => {
                if value.is_null() {
                    return fail(
                        node,
                        node.pos(),
                        format!("nil pointer evaluating {}.{name}", ty.name()),
                    );
                }
                (*inner, true)
            }
            _ => (ty, false),
        };
        let type_name = || {
            if pointer {
                format!("*{}", ty.name())
            } else {
                ty.name()
            }
        };
        match (ty, value) {
            (GoType::Struct(..), Value::Object(_) | Value::Null) => {
                let Some(field) = ty.field(name) else {
                    return fail(
                        node,
                        node.pos(),
                        format!("can't evaluate field {name} in type {}", type_name()),
                    );
                };
                if has_args {
                    return fail(
                        node,
                        node.pos(),
                        format!("{name} is not a method but has arguments"),
                    );
                }
                Ok(receiver
                    .child_typed(|v| v.get(field.key), field.ty)
                    .unwrap_or_else(|| Val::zero(field.ty)))
            }
            (GoType::Map(_, _, elem), Value::Object(_) | Value::Null) => {
                if has_args {
                    return fail(
                        node,
                        node.pos(),
                        format!("{name} is not a method but has arguments"),
                    );
                }
                Ok(receiver
                    .child_typed(|v| v.get(name), elem)
                    .unwrap_or(Val::Missing))
            }
            // The JSON does not have the type's shape: treat it as untyped.
            (GoType::Struct(..) | GoType::Map(..), _) => {
                let untyped = receiver.child(|v| Some(v)).unwrap_or(Val::Missing);
                Self::eval_field(&untyped, name, node, has_args)
            }
            _ => fail(
                node,
                node.pos(),
                format!("can't evaluate field {name} in type {}", type_name()),
            ),
        }
    }

    /// Evaluates an argument (Go's `evalArg` for an `any` parameter).
    fn eval_arg(&mut self, dot: &Val<'a>, node: &Operand) -> Result<Val<'a>> {
        match node {
            Operand::Dot(_) => Ok(dot.clone()),
            Operand::Nil(_) => Ok(Val::own(Value::Null)),
            Operand::Bool(_, b) => Ok(Val::own(Value::Bool(*b))),
            Operand::String { value, .. } => Ok(Val::own(Value::String(value.clone()))),
            Operand::Number { value, text, pos } => match value {
                Number::Int(i) => Ok(Val::own(Value::from(*i))),
                Number::Float(f) => Ok(Val::own(Value::from(*f))),
                Number::Overflow => fail(node, *pos, format!("{text} overflows int")),
            },
            Operand::Field { idents, .. } => {
                Self::eval_field_chain(dot.clone(), node, idents, std::slice::from_ref(node), None)
            }
            Operand::Variable { idents, .. } => {
                let value = self.var_value(idents.first().map_or("$", String::as_str), node)?;
                Self::eval_field_chain(value, node, idents.get(1..).unwrap_or(&[]), &[], None)
            }
            Operand::Pipe(pipe) => self.eval_pipeline(dot, pipe),
            Operand::Identifier { name, .. } => {
                let cmd = Command {
                    pos: node.pos(),
                    args: Vec::new(),
                };
                self.eval_function(dot, name, node, &cmd, None)
            }
            Operand::Chain {
                node: inner,
                fields,
                ..
            } => {
                if matches!(**inner, Operand::Nil(_)) {
                    return fail(
                        node,
                        node.pos(),
                        format!("indirection through explicit nil in {node}"),
                    );
                }
                let receiver = self.eval_arg(dot, inner)?;
                Self::eval_field_chain(receiver, node, fields, &[], None)
            }
        }
    }

    fn eval_function(
        &mut self,
        dot: &Val<'a>,
        name: &str,
        ident: &Operand,
        cmd: &Command,
        final_val: Option<Val<'a>>,
    ) -> Result<Val<'a>> {
        let arg_nodes = cmd.args.get(1..).unwrap_or(&[]);
        let (params, variadic) = signature(name);
        let count = arg_nodes.len() + usize::from(final_val.is_some());
        if variadic.is_some() && count < params.len() {
            // Go reports the count without the piped value here.
            return fail(
                ident,
                ident.pos(),
                format!(
                    "wrong number of args for {name}: want at least {} got {}",
                    params.len(),
                    arg_nodes.len()
                ),
            );
        }
        if variadic.is_none() && count != params.len() {
            return fail(
                ident,
                ident.pos(),
                format!(
                    "wrong number of args for {name}: want {} got {count}",
                    params.len()
                ),
            );
        }
        if name == "and" || name == "or" {
            // Go 1.18+: evaluate lazily and return the deciding argument itself.
            let mut last = Val::Missing;
            for node in arg_nodes {
                last = self.eval_arg(dot, node)?;
                if is_true(&last) == (name == "or") {
                    return Ok(last);
                }
            }
            return Ok(final_val.unwrap_or(last));
        }
        let mut args: Vec<Val<'a>> = Vec::with_capacity(count);
        for (i, node) in arg_nodes.iter().enumerate() {
            let param = params.get(i).copied().or(variadic).unwrap_or(Param::Any);
            let val = match node {
                // Go accepts an integral float literal (3.0) for an int parameter.
                Operand::Number {
                    value: Number::Float(f),
                    ..
                } if param == Param::Int && f.fract() == 0.0 && f.abs() < 9.2e18 =>
                {
                    #[expect(clippy::cast_possible_truncation, reason = "integral and in range")]
                    Val::own(Value::from(*f as i64))
                }
                _ => self.eval_arg(dot, node)?,
            };
            check_param(&val, Some(node), param, cmd)?;
            args.push(val);
        }
        if let Some(val) = final_val {
            let param = params
                .get(args.len())
                .copied()
                .or(variadic)
                .unwrap_or(Param::Any);
            check_param(&val, None, param, cmd)?;
            args.push(val);
        }
        let result = call(name, &args)
            .or_else(|message| fail(cmd, cmd.pos, format!("error calling {name}: {message}")))?;
        if let Some(Value::String(s)) = result.get()
            && s.len() > MAX_OUTPUT
        {
            return fail(
                cmd,
                cmd.pos,
                format!("error calling {name}: result exceeds {MAX_OUTPUT} bytes"),
            );
        }
        Ok(result)
    }
}

/// Checks an argument against a parameter kind, with Go's messages:
/// literals are "expected X; found Y", computed values "wrong type for value".
fn check_param(val: &Val<'_>, node: Option<&Operand>, param: Param, cmd: &Command) -> Result<()> {
    let (pos, context) = match node {
        Some(n) => (n.pos(), n.to_string()),
        None => (cmd.pos, cmd.to_string()),
    };
    let err = |message: String| fail(&context, pos, message);
    let literal = node.filter(|n| {
        matches!(
            n,
            Operand::Bool(..) | Operand::Nil(_) | Operand::Number { .. } | Operand::String { .. }
        )
    });
    let (go_type, ok) = match param {
        Param::Any => return Ok(()),
        Param::Str => ("string", matches!(val.get(), Some(Value::String(_)))),
        Param::Int => (
            "int",
            matches!(val.get().and_then(number), Some(Num::Int(i)) if i64::try_from(i).is_ok()),
        ),
        Param::Strs => (
            "[]string",
            match val.get() {
                None | Some(Value::Null) => literal.is_none(),
                Some(Value::Array(items)) => items.iter().all(Value::is_string),
                _ => false,
            },
        ),
    };
    if ok {
        return Ok(());
    }
    if let Some(lit) = literal {
        return match (lit, param) {
            (Operand::Nil(_), _) => err(format!("cannot assign nil to {go_type}")),
            (_, Param::Strs) => err(format!("can't handle {lit} for arg of type []string")),
            (_, Param::Int) => err(format!("expected integer; found {lit}")),
            _ => err(format!("expected {go_type}; found {lit}")),
        };
    }
    match val.get() {
        None | Some(Value::Null) => err(format!("invalid value; expected {go_type}")),
        Some(v) => err(format!(
            "wrong type for value; expected {go_type}; got {}",
            type_name(v)
        )),
    }
}

fn str_arg<'v>(args: &'v [Val<'_>], i: usize) -> &'v str {
    match args.get(i).and_then(Val::get) {
        Some(Value::String(s)) => s,
        _ => "",
    }
}

fn int_arg(args: &[Val<'_>], i: usize) -> i64 {
    match args.get(i).and_then(Val::get).and_then(number) {
        Some(Num::Int(n)) => i64::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

fn string(s: String) -> Val<'static> {
    Val::own(Value::String(s))
}

fn boolean(b: bool) -> Val<'static> {
    Val::own(Value::Bool(b))
}

/// Calls a builtin on checked arguments; errors are the text after
/// `error calling NAME: `.
fn call<'a>(name: &str, args: &[Val<'a>]) -> std::result::Result<Val<'a>, String> {
    let values = || args.iter().map(Val::typed).collect::<Vec<_>>();
    let first = args.first().cloned().unwrap_or(Val::Missing);
    Ok(match name {
        "not" => boolean(!is_true(&first)),
        "len" => Val::own(Value::from(length(&first)?)),
        "index" => index(first, args.get(1..).unwrap_or(&[]))?,
        "slice" => slice(&first, args.get(1..).unwrap_or(&[]))?,
        "eq" => boolean(eq(&first, args.get(1..).unwrap_or(&[]))?),
        "ne" => boolean(!eq(&first, args.get(1..).unwrap_or(&[]))?),
        "lt" | "le" | "gt" | "ge" => {
            let second = args.get(1).cloned().unwrap_or(Val::Missing);
            let less = lt(&first, &second)?;
            let le = || -> std::result::Result<bool, String> {
                Ok(less || eq(&first, std::slice::from_ref(&second))?)
            };
            boolean(match name {
                "lt" => less,
                "le" => le()?,
                "gt" => !le()?,
                _ => !less,
            })
        }
        "print" => string(format::sprint(&values())),
        "println" => string(format::sprintln(&values())),
        "printf" => string(format::sprintf(
            str_arg(args, 0),
            values().get(1..).unwrap_or(&[]),
        )),
        "json" => {
            let mut out = String::new();
            format::json(&first.to_value(), &mut out);
            string(out)
        }
        "split" => {
            let (s, sep) = (str_arg(args, 0), str_arg(args, 1));
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| Value::String(p.to_owned())).collect()
            };
            Val::own(Value::Array(parts))
        }
        "join" => {
            let items: Vec<&str> = match first.get() {
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let sep = str_arg(args, 1);
            let total = items.iter().map(|s| s.len() + sep.len()).sum::<usize>();
            if total > MAX_OUTPUT {
                return Err(format!("result exceeds {MAX_OUTPUT} bytes"));
            }
            string(items.join(sep))
        }
        "html" => string(format::html_escape(&escaper_arg(&values()))),
        "js" => string(format::js_escape(&escaper_arg(&values()))),
        "urlquery" => string(format::query_escape(&escaper_arg(&values()))),
        "title" => string(title(str_arg(args, 0))),
        "lower" => string(map_chars(str_arg(args, 0), false)),
        "upper" => string(map_chars(str_arg(args, 0), true)),
        "pad" => {
            let s = str_arg(args, 0);
            let (prefix, suffix) = (int_arg(args, 1), int_arg(args, 2));
            if s.is_empty() {
                return Ok(string(String::new()));
            }
            let (Ok(prefix), Ok(suffix)) = (usize::try_from(prefix), usize::try_from(suffix))
            else {
                return Err("strings: negative Repeat count".to_owned());
            };
            if prefix.saturating_add(suffix).saturating_add(s.len()) > MAX_OUTPUT {
                return Err(format!("result exceeds {MAX_OUTPUT} bytes"));
            }
            string(format!("{}{s}{}", " ".repeat(prefix), " ".repeat(suffix)))
        }
        "truncate" => {
            let s = str_arg(args, 0);
            let n = int_arg(args, 1);
            let Ok(n) = usize::try_from(n) else {
                return Err(format!("runtime error: slice bounds out of range [:{n}]"));
            };
            if s.len() < n {
                return Ok(string(s.to_owned()));
            }
            // Go cuts bytes; stay on a character boundary to keep valid UTF-8.
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            string(s.get(..end).unwrap_or("").to_owned())
        }
        _ => return Err(format!("function {} not defined", format::quote(name))),
    })
}

fn length(val: &Val<'_>) -> std::result::Result<usize, String> {
    match val.get() {
        None => Err("len of nil pointer".to_owned()),
        // JSON null stands for Docker's nil maps and slices, whose length is 0.
        Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => Ok(s.len()),
        Some(Value::Array(a)) => Ok(a.len()),
        Some(Value::Object(o)) => Ok(o.len()),
        Some(v) => Err(format!("len of type {}", type_name(v))),
    }
}

/// An integer index within `0..=size`, as Go's `indexArg` checks it.
fn index_arg(index: &Val<'_>, size: usize) -> std::result::Result<usize, String> {
    match index.get() {
        None | Some(Value::Null) => Err("cannot index slice/array with nil".to_owned()),
        Some(v) => match number(v) {
            Some(Num::Int(x)) => match usize::try_from(x) {
                Ok(x) if x <= size => Ok(x),
                _ => Err(format!("index out of range: {x}")),
            },
            _ => Err(format!(
                "cannot index slice/array with type {}",
                type_name(v)
            )),
        },
    }
}

/// Go's escapers format one string argument as is, anything else with `Sprint`.
fn escaper_arg(values: &[format::Typed]) -> String {
    match values {
        [(Value::String(s), _)] => s.clone(),
        _ => format::sprint(values),
    }
}

fn index<'a>(item: Val<'a>, indexes: &[Val<'a>]) -> std::result::Result<Val<'a>, String> {
    if item.get().is_none() {
        return Err("index of untyped nil".to_owned());
    }
    if let (GoType::Map(_, Some(key_type), _), Some(Value::String(_))) =
        (item.ty(), indexes.first().and_then(Val::get))
    {
        // Go will not convert a string to a named key type (`nat.Port`).
        return Err(format!("value has type string; should be {key_type}"));
    }
    if item.is_nil() {
        // JSON null stands for Docker's nil maps and slices: a missing key
        // reads as the zero value ("" for the untyped map[string]string),
        // any position is out of range.
        return match indexes.first().map(basic) {
            None => Ok(item),
            Some(Basic::Str(_)) if matches!(item.ty(), GoType::Map(..)) => {
                Ok(Val::zero(item.elem_ty()))
            }
            Some(Basic::Str(_)) => Ok(string(String::new())),
            Some(Basic::Int(x)) => Err(format!("index out of range: {x}")),
            Some(_) => Err("index of untyped nil".to_owned()),
        };
    }
    let mut item = item;
    for idx in indexes {
        item = match item.get() {
            None | Some(Value::Null) => return Err("index of nil pointer".to_owned()),
            Some(Value::Array(items)) => {
                let x = index_arg(idx, items.len())?;
                if x == items.len() {
                    return Err(format!("index out of range: {x}"));
                }
                item.child_typed(|v| v.get(x), item.elem_ty())
                    .unwrap_or(Val::Missing)
            }
            Some(Value::String(s)) => {
                let x = index_arg(idx, s.len())?;
                match s.as_bytes().get(x) {
                    Some(b) => Val::own(Value::from(*b)),
                    None => return Err(format!("index out of range: {x}")),
                }
            }
            Some(Value::Object(_)) if matches!(item.ty(), GoType::Struct(..)) => {
                return Err(format!("can't index item of type {}", item.ty().name()));
            }
            Some(Value::Object(_)) => match idx.get() {
                Some(Value::String(key)) => {
                    let key = key.clone();
                    // A missing key gives the zero value; untyped, Docker's
                    // maps hold strings.
                    let zero = match item.ty() {
                        GoType::Map(_, _, elem) => Val::zero(elem),
                        _ => string(String::new()),
                    };
                    item.child_typed(|v| v.get(&key), item.elem_ty())
                        .unwrap_or(zero)
                }
                None | Some(Value::Null) => {
                    return Err("value is nil; should be of type string".to_owned());
                }
                Some(v) => {
                    return Err(format!("value has type {}; should be string", type_name(v)));
                }
            },
            Some(v) => return Err(format!("can't index item of type {}", type_name(v))),
        };
    }
    Ok(item)
}

fn slice<'a>(item: &Val<'a>, indexes: &[Val<'a>]) -> std::result::Result<Val<'a>, String> {
    let Some(value) = item.get().filter(|v| !v.is_null()) else {
        return Err("slice of untyped nil".to_owned());
    };
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match value {
        Value::String(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".to_owned());
            }
            s.len()
        }
        Value::Array(a) => a.len(),
        v => return Err(format!("can't slice item of type {}", type_name(v))),
    };
    let mut idx = [0, len, len];
    for (slot, index) in idx.iter_mut().zip(indexes) {
        *slot = index_arg(index, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match value {
        Value::String(s) => {
            let bytes = s.as_bytes().get(idx[0]..idx[1]).unwrap_or(&[]);
            string(String::from_utf8_lossy(bytes).into_owned())
        }
        Value::Array(a) => Val::own(Value::Array(a.get(idx[0]..idx[1]).unwrap_or(&[]).to_vec())),
        _ => Val::Missing,
    })
}

/// A comparable view of a value (Go's `basicKind`).
#[derive(PartialEq)]
enum Basic<'v> {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'v str),
    Other,
}

fn basic<'v>(val: &'v Val<'_>) -> Basic<'v> {
    match val.get() {
        None | Some(Value::Null) => Basic::Nil,
        Some(Value::Bool(b)) => Basic::Bool(*b),
        Some(Value::String(s)) => Basic::Str(s),
        Some(v @ Value::Number(_)) => match number(v) {
            Some(Num::Int(i)) => Basic::Int(i),
            Some(Num::Float(f)) => Basic::Float(f),
            None => Basic::Nil,
        },
        Some(_) => Basic::Other,
    }
}

/// Go's type name of a non-nil value, for comparison errors.
fn val_type(val: &Val<'_>) -> &'static str {
    val.get().map_or("interface {}", type_name)
}

fn incompatible(a: &Val<'_>, b: &Val<'_>) -> String {
    format!(
        "incompatible types for comparison: {} and {}",
        val_type(a),
        val_type(b)
    )
}

fn eq(first: &Val<'_>, others: &[Val<'_>]) -> std::result::Result<bool, String> {
    if others.is_empty() {
        return Err("missing argument for comparison".to_owned());
    }
    let a = basic(first);
    for other in others {
        let b = basic(other);
        let truth = match (&a, &b) {
            (Basic::Nil, Basic::Nil) => true,
            (Basic::Nil, _) | (_, Basic::Nil) => false,
            (Basic::Other, Basic::Other) => {
                let (x, y) = (first.to_value(), other.to_value());
                return Err(if x.is_array() == y.is_array() {
                    format!(
                        "non-comparable type {}: {}",
                        format::to_v(&y),
                        type_name(&y)
                    )
                } else {
                    format!(
                        "non-comparable types {}: {}, {}: {}",
                        format::to_v(&x),
                        type_name(&x),
                        type_name(&y),
                        format::to_v(&y)
                    )
                });
            }
            (Basic::Bool(x), Basic::Bool(y)) => x == y,
            (Basic::Int(x), Basic::Int(y)) => x == y,
            (Basic::Float(x), Basic::Float(y)) => x == y,
            (Basic::Str(x), Basic::Str(y)) => x == y,
            _ => return Err(incompatible(first, other)),
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: &Val<'_>, b: &Val<'_>) -> std::result::Result<bool, String> {
    match (basic(a), basic(b)) {
        (Basic::Nil | Basic::Other, _)
        | (_, Basic::Nil | Basic::Other)
        | (Basic::Bool(_), Basic::Bool(_)) => Err("invalid type for comparison".to_owned()),
        (Basic::Int(x), Basic::Int(y)) => Ok(x < y),
        (Basic::Float(x), Basic::Float(y)) => Ok(x < y),
        (Basic::Str(x), Basic::Str(y)) => Ok(x < y),
        _ => Err(incompatible(a, b)),
    }
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut prev = ' ';
    s.chars()
        .map(|c| {
            let separator = if prev.is_ascii() {
                !(prev.is_ascii_alphanumeric() || prev == '_')
            } else {
                !(prev.is_alphanumeric()) && prev.is_whitespace()
            };
            prev = c;
            if separator { simple_case(c, true) } else { c }
        })
        .collect()
}

/// Go's one-rune case mapping (`ß` stays `ß`, unlike Rust's `SS`).
fn simple_case(c: char, upper: bool) -> char {
    let mut mapped = if upper {
        c.to_uppercase().collect::<Vec<_>>()
    } else {
        c.to_lowercase().collect::<Vec<_>>()
    };
    match (mapped.pop(), mapped.is_empty()) {
        (Some(m), true) => m,
        _ => c,
    }
}

fn map_chars(s: &str, upper: bool) -> String {
    s.chars().map(|c| simple_case(c, upper)).collect()
}
