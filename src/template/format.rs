//! Go's `fmt` as templates see it: `%v` printing of JSON values, `Sprint`,
//! `Sprintln`, a `Sprintf` subset, `strconv.Quote` and `encoding/json`.

use std::fmt::Write as _;

use serde_json::Value;

use super::types::{GoType, duration_string};
use crate::units::format_float_g;

/// A template value with its Go type (`GoType::Any` when untyped).
pub(super) type Typed = (Value, &'static GoType);

/// A JSON number as Go would hold it: an integer or a float64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i128),
    Float(f64),
}

/// The number in `value`, if it is one.
pub(super) fn number(value: &Value) -> Option<Num> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(i) = n.as_i64() {
        Some(Num::Int(i128::from(i)))
    } else if let Some(u) = n.as_u64() {
        Some(Num::Int(i128::from(u)))
    } else {
        n.as_f64().map(Num::Float)
    }
}

/// The Go type name of a value, for error messages and `%!verb(type=...)`.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Number(_) => match number(value) {
            Some(Num::Float(_)) => "float64",
            _ => "int",
        },
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `%v` of a float64.
pub(super) fn float_v(f: f64) -> String {
    format_float_g(f, None)
}

/// Go's `%v`: `[a b]`, `map[k:v]` with sorted keys, `<nil>`.
pub(super) fn value_v(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(_) => match number(value) {
            Some(Num::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            Some(Num::Float(f)) => out.push_str(&float_v(f)),
            None => out.push_str("<nil>"),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                value_v(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("map[");
            for (i, (key, item)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push(':');
                value_v(item, out);
            }
            out.push(']');
        }
    }
}

/// An object's entries in Go's map order (sorted keys).
pub(super) fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// `%v` of one value into a new string.
pub(super) fn to_v(value: &Value) -> String {
    let mut out = String::new();
    value_v(value, &mut out);
    out
}

/// Whether Go's `fmt` sees a string: `Sprint` puts no space next to one.
fn is_string(arg: &Typed) -> bool {
    match arg.1 {
        GoType::String => true,
        GoType::Any => arg.0.is_string(),
        _ => false,
    }
}

/// `fmt.Sprint`: spaces between operands when neither is a string.
pub(super) fn sprint(args: &[Typed]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        let is_string = is_string(arg);
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        typed_arg(&arg.0, arg.1, 'v', Spec::default(), &mut out);
        prev_string = is_string;
    }
    out
}

/// `fmt.Sprintln`: spaces between all operands and a final newline.
pub(super) fn sprintln(args: &[Typed]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        typed_arg(&arg.0, arg.1, 'v', Spec::default(), &mut out);
    }
    out.push('\n');
    out
}

/// `%v` of a typed value as a template action prints it: Go's
/// `printableValue` follows a non-nil pointer first, so a
/// `*HealthConfig` prints `{...}`, not `&{...}`.
pub(super) fn action_v(value: &Value, ty: &'static GoType) -> String {
    let ty = match ty {
        GoType::Pointer(inner) if !value.is_null() => inner,
        _ => ty,
    };
    let mut out = String::new();
    typed_arg(value, ty, 'v', Spec::default(), &mut out);
    out
}

/// Go's `strconv.Quote`, shared with the Dockerfile parser.
pub(crate) use kiln_parser::golang::quote;

/// Go's `encoding/json` with `SetEscapeHTML(false)`, no trailing newline
/// (Docker's `json` template function). Object keys keep their order.
pub(super) fn json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(_) => match number(value) {
            Some(Num::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            Some(Num::Float(f)) => json_float(f, out),
            None => out.push_str("null"),
        },
        Value::String(s) => json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(key, out);
                out.push(':');
                json(item, out);
            }
            out.push('}');
        }
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // Go escapes the JavaScript line terminators even without HTML escaping.
            c if u32::from(c) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `template.HTMLEscapeString`.
pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub(super) fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if u32::from(c) < 0x20
                || (!c.is_ascii() && (c.is_control() || c.is_whitespace())) =>
            {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's JSON float: shortest `%f`, or `%e` outside [1e-6, 1e21).
fn json_float(f: f64, out: &mut String) {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{f:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
        let exp: i64 = exp.parse().unwrap_or(0);
        if exp < 0 {
            let _ = write!(out, "{mantissa}e-{}", -exp);
        } else {
            let _ = write!(out, "{mantissa}e+{exp:02}");
        }
    } else {
        let _ = write!(out, "{f}");
    }
}

/// A parsed `%` directive's flags.
#[derive(Default, Clone, Copy)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one per fmt flag, as Go's fmt has"
)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Go's `fmt` refuses widths and precisions above 1e6.
const MAX_WIDTH: usize = 1_000_000;

/// `fmt.Sprintf` for the verbs templates use: `%v %s %d %q %f %e %g %x %X
/// %t %c %o %b %%` with flags, width and precision (`*` too), and Go's
/// `%!verb(type=value)`, `%!v(MISSING)` and `%!(EXTRA ...)` markers.
pub(super) fn sprintf(format: &str, args: &[Typed]) -> String {
    let mut out = String::new();
    let mut next_arg = 0;
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        let bad_width;
        let mut bad_prec = false;
        if chars.peek().is_some_and(|&(_, c)| c == '*') {
            chars.next();
            match args.get(next_arg).and_then(|a| number(&a.0)) {
                Some(Num::Int(w)) => {
                    spec.minus |= w < 0;
                    spec.width = usize::try_from(w.unsigned_abs())
                        .ok()
                        .filter(|&w| w <= MAX_WIDTH);
                    bad_width = spec.width.is_none();
                }
                _ => bad_width = true,
            }
            next_arg += 1;
        } else {
            let (n, big) = digits(&mut chars);
            spec.width = n;
            bad_width = big;
        }
        if chars.peek().is_some_and(|&(_, c)| c == '.') {
            chars.next();
            if chars.peek().is_some_and(|&(_, c)| c == '*') {
                chars.next();
                match args.get(next_arg).and_then(|a| number(&a.0)) {
                    Some(Num::Int(p)) if p >= 0 => {
                        spec.prec = usize::try_from(p).ok().filter(|&p| p <= MAX_WIDTH);
                        bad_prec = spec.prec.is_none();
                    }
                    Some(Num::Int(_)) => spec.prec = None,
                    _ => bad_prec = true,
                }
                next_arg += 1;
            } else {
                let (n, big) = digits(&mut chars);
                spec.prec = Some(n.unwrap_or(0));
                bad_prec = big;
            }
        }
        if bad_width {
            out.push_str("%!(BADWIDTH)");
        }
        if bad_prec {
            out.push_str("%!(BADPREC)");
        }
        let Some((_, verb)) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next_arg += 1;
        typed_arg(&arg.0, arg.1, verb, spec, &mut out);
    }
    if next_arg < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, arg) in args.iter().enumerate().skip(next_arg) {
            if i > next_arg {
                out.push_str(", ");
            }
            match arg {
                (Value::Null, GoType::Any) => out.push_str("<nil>"),
                (value, GoType::Any) => {
                    out.push_str(type_name(value));
                    out.push('=');
                    value_v(value, &mut out);
                }
                (value, ty) => {
                    out.push_str(&ty.name());
                    out.push('=');
                    typed_arg(value, ty, 'v', Spec::default(), &mut out);
                }
            }
        }
        out.push(')');
    }
    out
}

/// Reads a decimal number; the flag says it was too large.
fn digits(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> (Option<usize>, bool) {
    let mut n: Option<usize> = None;
    let mut big = false;
    while let Some(&(_, c)) = chars.peek() {
        let Some(d) = c.to_digit(10) else { break };
        chars.next();
        let v = n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize);
        big |= v > MAX_WIDTH;
        n = Some(v.min(MAX_WIDTH + 1));
    }
    if big { (None, true) } else { (n, false) }
}

/// Formats one argument of a Go type as Go's `fmt` formats the typed
/// value: structs as `{a b}`, durations by their `String` method, sets as
/// `map[k:{}]`, nil slices `[]`, nil maps `map[]`. A pointer prints as
/// `&{...}` at any depth (Go prints a nested pointer's address, which
/// says nothing and differs on every run). A value whose JSON shape does
/// not fit the type prints as its JSON shape.
fn typed_arg(value: &Value, ty: &'static GoType, verb: char, spec: Spec, out: &mut String) {
    if verb == 'T' && *ty != GoType::Any {
        pad(&ty.name(), spec, out, false);
        return;
    }
    match (ty, value) {
        (GoType::Pointer(_), Value::Null) => {
            if verb == 'v' {
                pad("<nil>", spec, out, false);
            } else {
                let _ = write!(out, "%!{verb}({}=<nil>)", ty.name());
            }
        }
        (GoType::Pointer(inner), _) => {
            if matches!(
                inner,
                GoType::Struct(..) | GoType::Slice(..) | GoType::Map(..)
            ) {
                out.push('&');
            }
            typed_arg(value, inner, verb, spec, out);
        }
        (GoType::Duration, Value::Null | Value::Number(_)) => {
            let nanos = match number(value) {
                Some(Num::Int(i)) => i,
                _ => 0,
            };
            if matches!(verb, 'v' | 's' | 'q' | 'x' | 'X') {
                format_arg(&Value::String(duration_string(nanos)), verb, spec, out);
            } else {
                format_arg(
                    &Value::from(i64::try_from(nanos).unwrap_or(0)),
                    verb,
                    spec,
                    out,
                );
            }
        }
        (GoType::EmptyStruct, _) => out.push_str("{}"),
        (GoType::Struct(_, fields), Value::Null | Value::Object(_)) => {
            out.push('{');
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let item = value.get(field.key).unwrap_or(&Value::Null);
                typed_arg(item, field.ty, verb, spec, out);
            }
            out.push('}');
        }
        (GoType::Slice(_, elem), Value::Null | Value::Array(_)) => {
            out.push('[');
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                typed_arg(item, elem, verb, spec, out);
            }
            out.push(']');
        }
        (GoType::Map(_, _, elem), Value::Null | Value::Object(_)) => {
            out.push_str("map[");
            if let Value::Object(map) = value {
                for (i, (key, item)) in sorted(map).into_iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    format_arg(&Value::String(key.clone()), verb, spec, out);
                    out.push(':');
                    typed_arg(item, elem, verb, spec, out);
                }
            }
            out.push(']');
        }
        (GoType::String, Value::Null) => format_arg(&Value::String(String::new()), verb, spec, out),
        (GoType::Bool, Value::Null) => format_arg(&Value::Bool(false), verb, spec, out),
        (GoType::Int, Value::Null) => format_arg(&Value::from(0), verb, spec, out),
        _ => format_arg(value, verb, spec, out),
    }
}

/// Formats one argument; arrays and objects apply the verb to elements.
fn format_arg(arg: &Value, verb: char, spec: Spec, out: &mut String) {
    if verb == 'T' {
        let name = if arg.is_null() {
            "<nil>"
        } else {
            type_name(arg)
        };
        pad(name, spec, out, false);
        return;
    }
    match arg {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_arg(item, verb, spec, out);
            }
            out.push(']');
            return;
        }
        Value::Object(map) => {
            out.push_str("map[");
            for (i, (key, item)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_arg(&Value::String(key.clone()), verb, spec, out);
                out.push(':');
                format_arg(item, verb, spec, out);
            }
            out.push(']');
            return;
        }
        _ => {}
    }
    let body = match (verb, arg) {
        (_, Value::Null) => {
            if verb == 'v' {
                Some("<nil>".to_owned())
            } else {
                let _ = write!(out, "%!{verb}(<nil>)");
                return;
            }
        }
        ('v', _) => Some(to_v(arg)),
        ('s', Value::String(s)) => Some(truncate_chars(s, spec.prec)),
        ('q', Value::String(s)) => Some(quote(&truncate_chars(s, spec.prec))),
        ('x' | 'X', Value::String(s)) => {
            let bytes = s.as_bytes();
            let bytes = spec.prec.map_or(bytes, |p| bytes.get(..p).unwrap_or(bytes));
            let mut hex = String::new();
            for b in bytes {
                if verb == 'x' {
                    let _ = write!(hex, "{b:02x}");
                } else {
                    let _ = write!(hex, "{b:02X}");
                }
            }
            Some(hex)
        }
        ('t', Value::Bool(b)) => Some(b.to_string()),
        (_, Value::Number(_)) => match number(arg) {
            Some(Num::Int(i)) => format_int(i, verb, spec),
            Some(Num::Float(f)) => format_float(f, verb, spec),
            None => None,
        },
        _ => None,
    };
    if let Some(body) = body {
        pad(&body, spec, out, matches!(arg, Value::Number(_)));
    } else {
        let _ = write!(out, "%!{verb}({}=", type_name(arg));
        value_v(arg, out);
        out.push(')');
    }
}

fn truncate_chars(s: &str, prec: Option<usize>) -> String {
    match prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_owned(),
    }
}

fn sign(negative: bool, spec: Spec) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn format_int(i: i128, verb: char, spec: Spec) -> Option<String> {
    let abs = i.unsigned_abs();
    let mut digits = match verb {
        'd' | 'v' => abs.to_string(),
        'x' => format!("{abs:x}"),
        'X' => format!("{abs:X}"),
        'o' => format!("{abs:o}"),
        'b' => format!("{abs:b}"),
        'c' => {
            return Some(
                u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}')
                    .to_string(),
            );
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            let quoted = quote(&c.to_string());
            let inner = quoted.get(1..quoted.len() - 1).unwrap_or("");
            return Some(format!(
                "'{}'",
                inner.replace("\\\"", "\"").replace('\'', "\\'")
            ));
        }
        _ => return None,
    };
    if let Some(p) = spec.prec {
        if p == 0 && i == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let prefix = match verb {
        'x' if spec.sharp => "0x",
        'X' if spec.sharp => "0X",
        'o' if spec.sharp => "0",
        _ => "",
    };
    Some(format!("{}{prefix}{digits}", sign(i < 0, spec)))
}

fn format_float(f: f64, verb: char, spec: Spec) -> Option<String> {
    let body = match verb {
        'v' | 'g' | 'G' => format_float_g(f.abs(), spec.prec),
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), f.abs()),
        'e' | 'E' => {
            let sci = format!("{:.*e}", spec.prec.unwrap_or(6), f.abs());
            let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
            let exp: i64 = exp.parse().unwrap_or(0);
            let e = if verb == 'e' { 'e' } else { 'E' };
            format!(
                "{mantissa}{e}{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.abs()
            )
        }
        _ => return None,
    };
    Some(format!(
        "{}{body}",
        sign(f.is_sign_negative() && f != 0.0, spec)
    ))
}

/// Pads to the width: left with spaces, right with `-`, zeros after the
/// sign with `0`.
fn pad(body: &str, spec: Spec, out: &mut String, numeric: bool) {
    let len = body.chars().count();
    let Some(width) = spec.width.filter(|&w| w > len) else {
        out.push_str(body);
        return;
    };
    let fill = width - len;
    if spec.minus {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero {
        let split = usize::from(numeric && body.starts_with(['-', '+', ' ']));
        let (sign, rest) = body.split_at(split);
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(body);
    }
}
