//! `COPY --chmod` / `ADD --chmod` values, as `BuildKit`'s `dispatchCopy`
//! checks them (`frontend/dockerfile/dockerfile2llb/convert_copy.go`).
//!
//! `BuildKit` first tries the value as octal (`strconv.ParseUint(v, 8, 32)`):
//! up to `07777` it is an absolute mode, above that it is rejected. Any
//! other value is handed to `github.com/tonistiigi/dchapes-mode`, a port of
//! BSD `setmode(3)`, which accepts chmod(1) symbolic modes such as `u+x`,
//! `go-w`, `a=rX` or `u=rwx,go=u-w`; `BuildKit` passes those to the copy as a
//! mode string that the daemon applies to each copied file and directory.
//! Values that look numeric but are not valid octal (`64a`, `8`) get the
//! octal error; other unparsable values get the mode package's
//! `invalid syntax`.
//!
//! Symbolic modes are parsed with a umask of zero, as the mode package's
//! `Parse` does, so a clause without a who part (`+x`) acts like `a+x`.
//! `X` is honoured only with `+` (with `=` it is ignored, so `a=rX` sets
//! `a=r`), as in the mode package.

use std::fmt;

use thiserror::Error;

/// Set-user-ID, set-group-ID and sticky bits.
const S_ISUID: u16 = 0o4000;
const S_ISGID: u16 = 0o2000;
const S_ISTXT: u16 = 0o1000;
/// Read/write/execute masks per class.
const S_IRWXU: u16 = 0o700;
const S_IRWXG: u16 = 0o070;
const S_IRWXO: u16 = 0o007;
/// Read, write and execute for all classes.
const ALL_READ: u16 = 0o444;
const ALL_WRITE: u16 = 0o222;
const ALL_EXEC: u16 = 0o111;
/// Everything but the sticky bit: the bits `a` and `=` with no who cover.
const STANDARD_BITS: u16 = S_ISUID | S_ISGID | S_IRWXU | S_IRWXG | S_IRWXO;
/// All twelve permission bits.
const PERMISSION_BITS: u32 = 0o7777;

/// A `--chmod` value `BuildKit` rejects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChmodError {
    /// A numeric-looking value that is not octal in `0..=07777`.
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    NotOctal(String),
    /// A symbolic mode the mode package cannot parse (upstream's bare
    /// `strconv`-style message).
    #[error("invalid syntax")]
    Syntax,
}

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// An absolute mode, at most `0o7777`.
    Octal(u32),
    /// A chmod(1) symbolic mode.
    Symbolic(SymbolicMode),
}

impl fmt::Display for Chmod {
    /// Octal modes as octal digits (`755`), symbolic modes as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Octal(bits) => write!(f, "{bits:o}"),
            Self::Symbolic(symbolic) => f.write_str(symbolic.as_str()),
        }
    }
}

impl serde::Serialize for Chmod {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Chmod {
    /// The permission bits a copied file or directory ends up with, given
    /// its current mode. Bits above `0o7777` (the file type) are kept.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Self::Octal(bits) => (mode & !PERMISSION_BITS) | (bits & PERMISSION_BITS),
            Self::Symbolic(symbolic) => symbolic.apply(mode, is_dir),
        }
    }
}

/// A compiled symbolic mode: the `setmode(3)` command list.
#[derive(Clone, PartialEq, Eq)]
pub struct SymbolicMode {
    source: String,
    commands: Vec<Command>,
}

impl fmt::Debug for SymbolicMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SymbolicMode").field(&self.source).finish()
    }
}

/// One `setmode(3)` bit command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Command {
    op: Op,
    bits: u16,
}

/// What a [`Command`] does to the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Set `bits`.
    Set,
    /// Clear `bits`.
    Clear,
    /// Set `bits` if the original mode had any execute bit or is a directory.
    SetIfExecutable,
    /// Copy one class's permissions (`u`, `g` or `o`) onto the classes in
    /// `targets`, masked by `bits`.
    Copy {
        source: Class,
        targets: Targets,
        set: bool,
        clear: bool,
    },
}

/// A permission class a copy command reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    User,
    Group,
    Other,
}

/// The classes a copy command writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Targets {
    user: bool,
    group: bool,
    other: bool,
}

impl SymbolicMode {
    /// The mode string as written, which `BuildKit` hands to the copy as is.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Applies the mode to a file's current mode, like the mode package's
    /// `Set.Apply`. `X` adds execute bits only for directories and for
    /// files that already have an execute bit. Bits above `0o7777` are kept.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        // Masked to twelve bits, so the cast cannot truncate.
        let original = (mode & PERMISSION_BITS) as u16;
        let mut new = original;
        for command in &self.commands {
            match command.op {
                Op::Set => new |= command.bits,
                Op::Clear => new &= !command.bits,
                Op::SetIfExecutable => {
                    if original & ALL_EXEC != 0 || is_dir {
                        new |= command.bits;
                    }
                }
                Op::Copy {
                    source,
                    targets,
                    set,
                    clear,
                } => {
                    let value = match source {
                        Class::User => (new & S_IRWXU) >> 6,
                        Class::Group => (new & S_IRWXG) >> 3,
                        Class::Other => new & S_IRWXO,
                    };
                    if clear {
                        // `=` clears everything in the targets; `-` only
                        // the copied bits.
                        let cleared = if set { S_IRWXO } else { value };
                        new &= !apply_to_targets(cleared, targets, command.bits);
                    }
                    if set {
                        new |= apply_to_targets(value, targets, command.bits);
                    }
                }
            }
        }
        (mode & !PERMISSION_BITS) | u32::from(new)
    }
}

/// Spreads a three-bit `value` onto the target classes, masked by `bits`.
fn apply_to_targets(value: u16, targets: Targets, bits: u16) -> u16 {
    let mut out = 0;
    if targets.user {
        out |= (value << 6) & bits;
    }
    if targets.group {
        out |= (value << 3) & bits;
    }
    if targets.other {
        out |= value & bits;
    }
    out
}

/// Parses a `--chmod` value as `BuildKit` does. An empty value means the flag
/// was not given (`BuildKit` skips the check), so it yields `Ok(None)`.
pub fn parse_chmod(value: &str) -> Result<Option<Chmod>, ChmodError> {
    if value.is_empty() {
        return Ok(None);
    }
    let not_octal = || ChmodError::NotOctal(value.to_owned());
    if let Some(octal) = crate::golang::parse_uint(value, 8, 32)
        .ok()
        .and_then(|v| u32::try_from(v).ok())
    {
        return if octal > PERMISSION_BITS {
            Err(not_octal())
        } else {
            Ok(Some(Chmod::Octal(octal)))
        };
    }
    // The mode package reads anything starting with a digit as a number,
    // and its number errors are reported as BuildKit's octal error.
    if value.as_bytes()[0].is_ascii_digit() {
        return Err(not_octal());
    }
    let commands = parse_symbolic(value.as_bytes()).ok_or(ChmodError::Syntax)?;
    Ok(Some(Chmod::Symbolic(SymbolicMode {
        source: value.to_owned(),
        commands,
    })))
}

/// Builds the command list for a symbolic mode, following the mode
/// package's `ParseWithUmask` with a zero umask.
fn parse_symbolic(s: &[u8]) -> Option<Vec<Command>> {
    // With umask 0 the "not masked" set is every bit.
    let mask: u16 = !0;
    let mut builder = Builder {
        commands: Vec::new(),
        mask,
    };
    let mut i = 0;
    let mut equal_op_done = false;
    loop {
        // Who: any run of a, u, g, o.
        let mut who: u16 = 0;
        loop {
            match *s.get(i)? {
                b'a' => who |= STANDARD_BITS,
                b'u' => who |= S_ISUID | S_IRWXU,
                b'g' => who |= S_ISGID | S_IRWXG,
                b'o' => who |= S_IRWXO,
                _ => break,
            }
            i += 1;
        }

        // One or more `op perms` actions for this who.
        loop {
            let op = *s.get(i)?;
            i += 1;
            match op {
                b'+' | b'-' => {}
                b'=' => equal_op_done = false,
                _ => return None,
            }
            who &= !S_ISTXT;
            let mut perm: u16 = 0;
            let mut perm_x: u16 = 0;
            loop {
                let b = s.get(i).copied().unwrap_or(0);
                match b {
                    b'r' => perm |= ALL_READ,
                    b's' => {
                        // Set-id bits are ignored when only "other" is named.
                        if who == 0 || who & !S_IRWXO != 0 {
                            perm |= S_ISUID | S_ISGID;
                        }
                    }
                    b't' => {
                        if who == 0 || who & !S_IRWXO != 0 {
                            who |= S_ISTXT;
                            perm |= S_ISTXT;
                        }
                    }
                    b'w' => perm |= ALL_WRITE,
                    b'X' => {
                        if op == b'+' {
                            perm_x = ALL_EXEC;
                        }
                    }
                    b'x' => perm |= ALL_EXEC,
                    b'u' | b'g' | b'o' => {
                        // Flush pending bits, then copy the named class.
                        if perm != 0 {
                            builder.add(op, who, perm);
                            perm = 0;
                        }
                        if op == b'=' {
                            equal_op_done = true;
                        }
                        if perm_x != 0 {
                            builder.add(b'X', who, perm_x);
                            perm_x = 0;
                        }
                        builder.add_copy(b, who, op);
                    }
                    _ => {
                        if perm != 0 || (op == b'=' && !equal_op_done) {
                            if op == b'=' {
                                equal_op_done = true;
                            }
                            builder.add(op, who, perm);
                        }
                        if perm_x != 0 {
                            builder.add(b'X', who, perm_x);
                        }
                        break;
                    }
                }
                i += 1;
            }
            match s.get(i) {
                None => return Some(compress(builder.commands)),
                Some(b',') => {
                    i += 1;
                    break;
                }
                Some(_) => {}
            }
        }
    }
}

/// Accumulates commands the way the mode package's `addcmd` does.
struct Builder {
    commands: Vec<Command>,
    mask: u16,
}

impl Builder {
    /// `addcmd` for `+`, `-`, `=` and `X`.
    fn add(&mut self, op: u8, who: u16, operand: u16) {
        // With no who part the umask decides which bits may change.
        let bits = if who == 0 {
            self.mask & operand
        } else {
            who & operand
        };
        let op = match op {
            b'=' => {
                // `=` clears the named classes first, then sets.
                let clear = if who == 0 { STANDARD_BITS } else { who };
                self.commands.push(Command {
                    op: Op::Clear,
                    bits: clear,
                });
                Op::Set
            }
            b'+' => Op::Set,
            b'-' => Op::Clear,
            _ => Op::SetIfExecutable,
        };
        self.commands.push(Command { op, bits });
    }

    /// `addcmd` for the `u`, `g`, `o` copy permissions.
    fn add_copy(&mut self, class: u8, who: u16, op: u8) {
        let source = match class {
            b'u' => Class::User,
            b'g' => Class::Group,
            _ => Class::Other,
        };
        let (targets, bits) = if who == 0 {
            let all = Targets {
                user: true,
                group: true,
                other: true,
            };
            (all, self.mask)
        } else {
            let targets = Targets {
                user: who & 0o400 != 0,
                group: who & 0o040 != 0,
                other: who & 0o004 != 0,
            };
            (targets, !0)
        };
        self.commands.push(Command {
            op: Op::Copy {
                source,
                targets,
                set: op == b'+' || op == b'=',
                clear: op == b'-' || op == b'=',
            },
            bits,
        });
    }
}

/// Merges each run of set/clear/X commands into at most one clear, one set
/// and one X command, like the mode package's `compress`. Copy commands are
/// kept in place.
fn compress(commands: Vec<Command>) -> Vec<Command> {
    let mut out = Vec::with_capacity(commands.len());
    let mut iter = commands.into_iter().peekable();
    while let Some(first) = iter.next() {
        if matches!(first.op, Op::Copy { .. }) {
            out.push(first);
            continue;
        }
        let (mut set, mut clear, mut exec) = (0u16, 0u16, 0u16);
        let mut current = Some(first);
        while let Some(command) = current {
            match command.op {
                Op::Clear => {
                    clear |= command.bits;
                    set &= !command.bits;
                    exec &= !command.bits;
                }
                Op::Set => {
                    set |= command.bits;
                    clear &= !command.bits;
                    exec &= !command.bits;
                }
                Op::SetIfExecutable => exec |= command.bits & !set,
                Op::Copy { .. } => {}
            }
            current = iter.next_if(|next| !matches!(next.op, Op::Copy { .. }));
        }
        for (op, bits) in [
            (Op::Clear, clear),
            (Op::Set, set),
            (Op::SetIfExecutable, exec),
        ] {
            if bits != 0 {
                out.push(Command { op, bits });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    const DIR: bool = true;
    const FILE: bool = false;

    fn symbolic(s: &str) -> SymbolicMode {
        match parse_chmod(s) {
            Ok(Some(Chmod::Symbolic(mode))) => mode,
            other => panic!("{s:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn octal_values() {
        let cases: &[(&str, u32)] = &[
            ("755", 0o755),
            ("0644", 0o644),
            ("0", 0),
            ("7777", 0o7777),
            ("07777", 0o7777),
            ("4755", 0o4755),
            ("000000000644", 0o644),
            ("1", 1),
        ];
        for &(input, want) in cases {
            assert_eq!(
                parse_chmod(input),
                Ok(Some(Chmod::Octal(want))),
                "input {input}"
            );
        }
        assert_eq!(parse_chmod(""), Ok(None));
    }

    #[test]
    fn buildkit_invalid_chmod_messages() {
        // dockerfile_test.go testCopyInvalidChmod, plus other numeric forms.
        for input in [
            "64a",
            "10000",
            "8",
            "9",
            "0o755",
            "0x1ff",
            "77777777777",
            "1-2",
            "7 ",
        ] {
            let err = parse_chmod(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid chmod parameter: '{input}'. it should be octal string and between 0 and 07777"
                )
            );
        }
        for input in [
            "z", "u", "g", "o", "go", ",", "q+r", "u+x,", "+755", "-0644", "a+q", "u!x", " u+x",
            "u+x ", "U+x", "ugo", "a=r,", "é",
        ] {
            assert_eq!(
                parse_chmod(input),
                Err(ChmodError::Syntax),
                "input {input:?}"
            );
            assert_eq!(
                parse_chmod(input).unwrap_err().to_string(),
                "invalid syntax"
            );
        }
    }

    #[test]
    fn dchapes_mode_apply_table() {
        // mode_test.go TestApply, the umask-0 cases (BuildKit parses with
        // umask 0). Octal strings go through BuildKit's octal path instead.
        let cases: &[(u32, bool, u32, &str)] = &[
            (0o777, FILE, 0o000, "="),
            (0o777, FILE, 0o777, "+"),
            (0o421, FILE, 0o421, "+"),
            (0o777, FILE, 0o777, "-"),
            (0o421, FILE, 0o421, "-"),
            (0o421, FILE, 0o1421, "+t"),
            (0o1421, FILE, 0o421, "-t"),
            (0o000, FILE, 0o400, "u+r"),
            (0o000, FILE, 0o200, "u+w"),
            (0o000, FILE, 0o100, "u+x"),
            (0o000, FILE, 0o000, "u+X"),
            (0o001, FILE, 0o101, "u+X"),
            (0o000, DIR, 0o100, "u+X"),
            (0o000, FILE, 0o4000, "u+s"),
            (0o000, FILE, 0o040, "g+r"),
            (0o000, FILE, 0o020, "g+w"),
            (0o000, FILE, 0o010, "g+x"),
            (0o000, FILE, 0o000, "g+X"),
            (0o100, FILE, 0o110, "g+X"),
            (0o000, DIR, 0o010, "g+X"),
            (0o000, FILE, 0o2000, "g+s"),
            (0o000, FILE, 0o004, "o+r"),
            (0o000, FILE, 0o002, "o+w"),
            (0o000, FILE, 0o001, "o+x"),
            (0o000, FILE, 0o000, "o+X"),
            (0o100, FILE, 0o101, "o+X"),
            (0o000, DIR, 0o001, "o+X"),
            (0o000, FILE, 0o000, "o+s"),
            (0o000, FILE, 0o444, "+r"),
            (0o000, FILE, 0o222, "+w"),
            (0o000, FILE, 0o111, "+x"),
            (0o000, FILE, 0o000, "+X"),
            (0o010, FILE, 0o111, "+X"),
            (0o000, DIR, 0o111, "+X"),
            (0o000, FILE, 0o6000, "+s"),
            (0o777, FILE, 0o333, "-r"),
            (0o777, FILE, 0o555, "-w"),
            (0o777, FILE, 0o666, "-x"),
            (0o777, FILE, 0o777, "-X"),
            (0o777, DIR, 0o777, "-X"),
            (0o6777, FILE, 0o777, "-s"),
            (0o777, FILE, 0o377, "u-r"),
            (0o777, FILE, 0o577, "u-w"),
            (0o777, FILE, 0o677, "u-x"),
            (0o777, FILE, 0o777, "u-X"),
            (0o777, DIR, 0o777, "u-X"),
            (0o4777, FILE, 0o777, "u-s"),
            (0o000, FILE, 0o600, "u=rw"),
            (0o777, FILE, 0o677, "u=rw"),
            (0o777, FILE, 0o077, "u="),
            (0o000, FILE, 0o666, "=rw"),
            (0o777, FILE, 0o666, "=rw"),
            (0o042, FILE, 0o442, "u=g"),
            (0o742, FILE, 0o442, "u=g"),
            (0o722, FILE, 0o022, "u=g-w"),
            (0o742, FILE, 0o442, "u=g-w"),
            (0o762, FILE, 0o462, "u=g-w"),
            (0o772, FILE, 0o572, "u=g-w"),
            (0o021, FILE, 0o121, "u+o"),
            (0o021, FILE, 0o221, "u+g"),
            (0o021, FILE, 0o321, "u+go"),
            (0o000, FILE, 0o764, "a=r,ug=rw,u+x"),
            (0o777, FILE, 0o764, "a=r,ug=rw,u+x"),
            (0o000, FILE, 0o1624, "o+r,g+w,a+t,g-s,u+og"),
            (0o2100, FILE, 0o1724, "o+r,g+w,a+t,g-s,u+og"),
            (0o6000, DIR, 0o5624, "o+r,g+w,a+t,g-s,u+og"),
            // From the chmod(1) examples.
            (0o777, FILE, 0o755, "go-w"),
            (0o000, FILE, 0o755, "u=rwx,go=rx"),
            (0o000, FILE, 0o755, "u=rwx,go=u-w"),
            (0o777, FILE, 0o700, "go="),
            (0o770, FILE, 0o755, "go=u-w"),
            (0o670, FILE, 0o644, "go=u-w"),
            (0o570, FILE, 0o555, "go=u-w"),
            (0o370, FILE, 0o311, "go=u-w"),
        ];
        for &(from, is_dir, want, mode) in cases {
            let got = symbolic(mode).apply(from, is_dir);
            assert_eq!(
                got, want,
                "{mode:?} on {from:#o} (dir: {is_dir}) gave {got:#o}"
            );
        }
    }

    #[test]
    fn dockerfile_symbolic_modes() {
        let cases: &[(&str, u32, bool, u32)] = &[
            ("a+rX", 0o600, FILE, 0o644),
            ("a+rX", 0o700, FILE, 0o755),
            ("a+rX", 0o700, DIR, 0o755),
            ("a+rX,go-w", 0o666, FILE, 0o644),
            // `X` is ignored with `=`.
            ("a=rX", 0o755, FILE, 0o444),
            ("a=rX", 0o700, DIR, 0o444),
            ("u+x", 0o644, FILE, 0o744),
            ("+x", 0o644, FILE, 0o755),
            ("go-w", 0o777, DIR, 0o755),
            ("u=rwx,g=rx,o=", 0o000, FILE, 0o750),
            ("=", 0o4777, FILE, 0o000),
            // `=` without who keeps the sticky bit; `a=` too.
            ("=", 0o1777, FILE, 0o1000),
            ("a=", 0o1777, FILE, 0o1000),
            ("u-x+w", 0o500, FILE, 0o600),
            ("o+s", 0o000, FILE, 0o000),
            ("o+t", 0o000, FILE, 0o000),
            ("u+t", 0o000, FILE, 0o1000),
        ];
        for &(mode, from, is_dir, want) in cases {
            let chmod = parse_chmod(mode).unwrap().unwrap();
            let got = chmod.apply(from, is_dir);
            assert_eq!(got, want, "{mode:?} on {from:#o} gave {got:#o}");
        }
        assert_eq!(symbolic("a+rX,go-w").as_str(), "a+rX,go-w");
    }

    #[test]
    fn apply_keeps_file_type_bits() {
        let regular = 0o100_644;
        assert_eq!(Chmod::Octal(0o755).apply(regular, FILE), 0o100_755);
        assert_eq!(symbolic("u+x").apply(regular, FILE), 0o100_744);
        let dir = 0o040_700;
        assert_eq!(symbolic("go+rX").apply(dir, DIR), 0o040_755);
    }

    #[test]
    fn every_octal_mode_round_trips() {
        // mode_test.go TestParseOctal: every value 0..=07777 is accepted.
        for value in 0..=0o7777u32 {
            let text = format!("{value:o}");
            assert_eq!(parse_chmod(&text), Ok(Some(Chmod::Octal(value))));
            assert_eq!(
                Chmod::Octal(value).apply(0o100_000, FILE),
                0o100_000 | value
            );
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let alphabet: Vec<char> = "ugoa+-=rwxXst,0123456789 é".chars().collect();
        let mut rng = XorShift::new(0xC0_4D);
        for _ in 0..5_000 {
            let s = rng.string(&alphabet, 16);
            if let Ok(Some(chmod)) = parse_chmod(&s) {
                let _ = chmod.apply(0o100_644, FILE);
                let _ = chmod.apply(0o040_755, DIR);
                let _ = chmod.apply(u32::MAX, DIR);
            }
        }
        assert!(parse_chmod(&"u+x,".repeat(50_000)).is_err());
        assert!(parse_chmod(&"7".repeat(50_000)).is_err());
        assert!(parse_chmod(&"u+rwx".repeat(20_000)).is_ok());
    }
}
