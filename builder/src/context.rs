//! The build context: a directory, its `.dockerignore` rules, COPY/ADD
//! source resolution, and content digests of sources for cache keys.
//!
//! Resolution follows `BuildKit`'s local-context behaviour (fsutil's
//! `copy.ResolveWildcards` and `FollowSymlinkInScope`): a source pattern is
//! relative to the context root, `..` and a leading `/` cannot leave it, and
//! symlinks are resolved as if the context were `/`. Files that the
//! `.dockerignore` excludes are treated as absent, as they are never sent to
//! `BuildKit`; Unix sockets are empty regular files, as fsutil's sender
//! sends them (see [`BuildContext::open`]).

#[cfg(test)]
mod tests;

use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_parser::dockerignore::{MatchInfo, PatternMatcher, filepath_match};
use kiln_store::Digest;
use kiln_store::digest::Hasher;

use crate::error::BuildError;

/// How many entries a not-found error lists.
const NEARBY_LIMIT: usize = 10;

/// A build context directory with its ignore rules.
#[derive(Debug, Clone)]
pub struct BuildContext {
    root: PathBuf,
    /// The directory as a root for resolving source paths.
    dir: Arc<kiln_rootfs::Root>,
    ignore: PatternMatcher,
    /// The client's build context, whose sockets arrive as empty regular
    /// files (fsutil sends a socket's stat and no data; the receiver
    /// creates every type it does not know as a regular file). In a
    /// stage's filesystem ([`BuildContext::open_stage`]) sockets are left
    /// out: fsutil's copier makes them sockets again, and no layer can
    /// hold one.
    sockets_as_files: bool,
}

/// What a source is on disk (after following symlinks for the source
/// itself; symlinks inside a directory source stay symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO or device node (or a socket in a stage's filesystem: in the
    /// build context a socket is a [`File`](Self::File)).
    Other,
}

impl FileType {
    fn of(meta: &Metadata) -> Self {
        let t = meta.file_type();
        if t.is_file() {
            Self::File
        } else if t.is_dir() {
            Self::Dir
        } else if t.is_symlink() {
            Self::Symlink
        } else {
            Self::Other
        }
    }

    /// One byte for the digest encoding.
    fn tag(self) -> u8 {
        match self {
            Self::File => b'f',
            Self::Dir => b'd',
            Self::Symlink => b'l',
            Self::Other => b'o',
        }
    }
}

/// One resolved COPY/ADD source.
#[derive(Debug, Clone)]
pub struct Source {
    /// Context-relative path of the file or directory that is read, after
    /// symlinks are resolved inside the context; `.` for the context root.
    pub path: String,
    /// Where the source lands relative to a destination directory: its
    /// name (the name the pattern matched, not a symlink target's), or the
    /// empty string for a directory whose contents are copied (with
    /// `--parents`, the pivot directory whose matching paths are copied).
    pub dest: String,
    /// Whether the source is a directory, so the caller copies its
    /// contents rather than the directory itself.
    pub copy_contents: bool,
    /// What the source is.
    pub file_type: FileType,
    /// `--exclude` patterns, matched against paths relative to this source
    /// when its contents are walked.
    excludes: Option<Arc<PatternMatcher>>,
    /// With `--parents`, the pattern after the pivot: only what it matches
    /// (relative to this source) is copied, with the directories on the
    /// way to it.
    include: Option<Arc<Include>>,
}

/// A `--parents` include pattern, as fsutil's copier matches its
/// `IncludePatterns`: with patternmatcher semantics (`**` spans any
/// number of directories, including none), a directory that matches
/// brings everything below it, and a directory that does not is created
/// only if something below it matches.
#[derive(Debug)]
struct Include {
    matcher: PatternMatcher,
}

impl Include {
    /// Whether something below directory `rel` (not matched itself) can
    /// match, so the walk need not read directories no pattern can reach.
    /// Conservative: a component with `**`, `[` or `\` is assumed to match
    /// whatever follows.
    fn may_match_below(&self, rel: &str) -> bool {
        let dirs: Vec<&str> = rel.split('/').collect();
        self.matcher
            .patterns()
            .iter()
            .filter(|p| !p.is_exclusion())
            .any(|pattern| {
                let parts: Vec<&str> = pattern.as_str().split('/').collect();
                for (i, dir) in dirs.iter().enumerate() {
                    let Some(part) = parts.get(i) else {
                        // The pattern ended at or above `rel`.
                        return false;
                    };
                    if part.contains("**") || part.contains(['[', '\\']) {
                        return true;
                    }
                    // `*` and `?` stay within a component in both Go's
                    // filepath.Match and patternmatcher's expressions.
                    if !filepath_match(part, dir).unwrap_or(true) {
                        return false;
                    }
                }
                parts.len() > dirs.len()
            })
    }
}

impl Source {
    /// Whether `--exclude` removes `rel` (a path relative to this source).
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.excludes
            .as_ref()
            .is_some_and(|m| m.matches_or_parent_matches(rel))
    }
}

/// A directory's child during a walk: an entry, or a directory to descend
/// into with what its children are matched against.
enum Slot {
    Leaf(Entry),
    Dir {
        entry: Entry,
        matched: Matched,
        /// Ignored, excluded or not (yet) included itself, kept only if
        /// something below is kept.
        skipped: bool,
    },
}

/// What a directory's children are matched against during a walk: its
/// context path (for the `.dockerignore`) and the parent results of the
/// ignore, `--exclude` and `--parents` include patterns.
#[derive(Default)]
struct Matched {
    ctx: String,
    ignore: MatchInfo,
    exclude: MatchInfo,
    include: MatchInfo,
}

/// One file found under a source, for digests and copying.
pub(crate) struct Entry {
    /// Path relative to the source; empty for the source itself.
    pub(crate) rel: Vec<u8>,
    /// Where the file is on disk.
    pub(crate) abs: PathBuf,
    /// Its `lstat`.
    pub(crate) meta: Metadata,
}

impl BuildContext {
    /// Opens the client's build context directory with the given
    /// `.dockerignore` patterns (already read from the file, as
    /// [`kiln_parser::dockerignore::parse_ignore_file`] returns them).
    /// Its sockets read as empty regular files with the socket's mode and
    /// times, as fsutil's sender transfers them to `BuildKit`.
    pub fn open(dir: &Path, ignore_patterns: &[String]) -> Result<Self, BuildError> {
        Self::open_with(dir, ignore_patterns, true)
    }

    /// Opens a stage's or image's filesystem (mounted at `dir`) as `COPY
    /// --from` reads it: nothing is ignored, and sockets are left out,
    /// since `BuildKit` copies them as sockets and no layer holds one.
    pub fn open_stage(dir: &Path) -> Result<Self, BuildError> {
        Self::open_with(dir, &[], false)
    }

    fn open_with(
        dir: &Path,
        ignore_patterns: &[String],
        sockets_as_files: bool,
    ) -> Result<Self, BuildError> {
        let meta = match fs::metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BuildError::ContextNotFound {
                    path: dir.to_owned(),
                });
            }
            Err(e) => return Err(BuildError::io(dir, e)),
        };
        if !meta.is_dir() {
            return Err(BuildError::ContextNotDirectory {
                path: dir.to_owned(),
            });
        }
        let ignore = compile(ignore_patterns)?;
        let root = kiln_rootfs::Root::open(dir).map_err(|e| BuildError::io(dir, e))?;
        Ok(Self {
            root: dir.to_owned(),
            dir: Arc::new(root),
            ignore,
            sockets_as_files,
        })
    }

    /// What a file with this `lstat` is as a source: a socket is a regular
    /// file in the client's context (see [`open`](Self::open)).
    fn kind(&self, meta: &Metadata) -> FileType {
        if self.sockets_as_files && meta.file_type().is_socket() {
            FileType::File
        } else {
            FileType::of(meta)
        }
    }

    /// Whether sockets are copied as empty regular files (the client's
    /// context) rather than left out (a stage's filesystem).
    pub(crate) fn sockets_as_files(&self) -> bool {
        self.sockets_as_files
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves COPY/ADD source patterns to sources, in pattern order and,
    /// within a wildcard pattern, in path order.
    ///
    /// `excludes` are `--exclude` patterns (`.dockerignore` syntax), matched
    /// against paths relative to each source when its contents are walked;
    /// a source itself (a wildcard match included) is never excluded, as
    /// fsutil's copier matches them only below the path it copies (so
    /// `ADD --exclude=* dir* /d` makes an empty `/d`). `follow_parents` is
    /// `--parents` (see [`resolve_parents`](Self::resolve_parents)).
    pub fn resolve_sources(
        &self,
        patterns: &[String],
        excludes: &[String],
        follow_parents: bool,
    ) -> Result<Vec<Source>, BuildError> {
        let excludes = if excludes.is_empty() {
            None
        } else {
            Some(Arc::new(compile(excludes)?))
        };
        let mut out = Vec::new();
        for pattern in patterns {
            if follow_parents {
                self.resolve_parents(pattern, excludes.as_ref(), &mut out)?;
            } else {
                self.resolve_one(pattern, excludes.as_ref(), None, &mut out)?;
            }
        }
        Ok(out)
    }

    /// `--parents` as dockerfile2llb converts it: the part of the pattern
    /// before its first `/./` (the context root without one) is the source,
    /// resolved as any source (wildcards included), and the part after it
    /// becomes an include pattern matched below each directory it resolves
    /// to (see [`Include`]). Each such directory's contents are copied, so
    /// the destination directory is made even when nothing matches, as in
    /// `BuildKit`. A pattern without wildcards on either side must exist
    /// (`BuildKit`'s `RequiredPaths`).
    fn resolve_parents(
        &self,
        pattern: &str,
        excludes: Option<&Arc<PatternMatcher>>,
        out: &mut Vec<Source>,
    ) -> Result<(), BuildError> {
        let (pivot, below) = pattern.split_once("/./").unwrap_or(("/", pattern));
        let below = clean_components(below).join("/");
        if !contains_wildcards(pivot) && !contains_wildcards(&below) {
            let mut whole = clean_components(pivot);
            whole.extend(clean_components(&below));
            if self.resolve_path(&whole, true)?.is_none() {
                return Err(self.not_found(pattern, &whole));
            }
        }
        let include = Arc::new(Include {
            matcher: compile(std::slice::from_ref(&below))?,
        });
        let pivot = if pivot.is_empty() { "/" } else { pivot };
        self.resolve_one(pivot, excludes, Some(&include), out)
            .map_err(|e| match e {
                BuildError::SourceNotFound { nearby, .. } => BuildError::SourceNotFound {
                    pattern: pattern.to_owned(),
                    nearby,
                },
                other => other,
            })
    }

    fn resolve_one(
        &self,
        pattern: &str,
        excludes: Option<&Arc<PatternMatcher>>,
        include: Option<&Arc<Include>>,
        out: &mut Vec<Source>,
    ) -> Result<(), BuildError> {
        let comps = clean_components(pattern);
        let split = comps
            .iter()
            .position(|c| has_wildcards(c))
            .unwrap_or(comps.len());
        let (fixed, wild) = comps.split_at(split);
        let source = |real: &[String], lexical: &[String], meta: &Metadata| {
            let is_dir = meta.is_dir();
            Source {
                path: join_or_dot(real),
                dest: if is_dir {
                    String::new()
                } else {
                    lexical.last().cloned().unwrap_or_default()
                },
                copy_contents: is_dir,
                file_type: self.kind(meta),
                excludes: excludes.cloned(),
                include: include.cloned(),
            }
        };

        if wild.is_empty() {
            let Some((real, meta)) = self.resolve_path(fixed, true)? else {
                return Err(self.not_found(pattern, fixed));
            };
            out.push(source(&real, fixed, &meta));
            return Ok(());
        }

        // A wildcard may match nothing: BuildKit copies with
        // AllowEmptyWildcard, which makes `COPY package.json lock.json* ./`
        // work when the lock file is absent.
        let Some((base, meta)) = self.resolve_path(fixed, true)? else {
            return Ok(());
        };
        if !meta.is_dir() {
            return Ok(());
        }
        // Go's filepath.Match, as fsutil's ResolveWildcards: `*` stays
        // within one directory, so `**` is `*` here (patternmatcher's `**`
        // applies to `--parents` include patterns only).
        let wild_pattern = wild.join("/");
        let mut matches = Vec::new();
        self.match_wildcards(&base, &[], &wild_pattern, wild.len(), &mut matches)?;
        for rel in matches {
            let real_lexical: Vec<String> = base.iter().chain(&rel).cloned().collect();
            // The match itself is followed if it is a symlink.
            let Some((real, meta)) = self.resolve_path(&real_lexical, true)? else {
                log::warn!(
                    "COPY source {pattern:?}: {:?} is a dangling symlink, skipped",
                    rel.join("/")
                );
                continue;
            };
            let lexical: Vec<String> = fixed.iter().chain(&rel).cloned().collect();
            out.push(source(&real, &lexical, &meta));
        }
        Ok(())
    }

    /// Walks `base/prefix` for entries whose path relative to `base` matches
    /// `pattern`; a matching directory is not descended into (Go's
    /// `filepath.Walk` + `SkipDir` in fsutil). `*` cannot match `/`, so only
    /// `depth` levels are visited.
    fn match_wildcards(
        &self,
        base: &[String],
        prefix: &[String],
        pattern: &str,
        depth: usize,
        out: &mut Vec<Vec<String>>,
    ) -> Result<(), BuildError> {
        let dir: Vec<String> = base.iter().chain(prefix).cloned().collect();
        for (name, meta) in self.read_dir_sorted(&dir)? {
            let mut rel = prefix.to_vec();
            rel.push(name);
            let rel_str = rel.join("/");
            let matched =
                filepath_match(pattern, &rel_str).map_err(|source| BuildError::Pattern {
                    pattern: pattern.to_owned(),
                    source,
                })?;
            if matched {
                let ctx_path: Vec<String> = base.iter().chain(&rel).cloned().collect();
                if self.visible(&ctx_path.join("/"), meta.is_dir())? {
                    out.push(rel);
                }
            } else if meta.is_dir() && rel.len() < depth {
                self.match_wildcards(base, &rel, pattern, depth, out)?;
            }
        }
        Ok(())
    }

    /// Resolves a cleaned path inside the context, following symlinks as if
    /// the context were the root (`follow_last` also follows a symlink in
    /// the last component), through `kiln_rootfs`'s one resolver with the
    /// `.dockerignore` as its filter. `None` when something on the way is
    /// missing or ignored.
    fn resolve_path(
        &self,
        comps: &[String],
        follow_last: bool,
    ) -> Result<Option<(Vec<String>, Metadata)>, BuildError> {
        let path = comps.join("/");
        let mut visible = |rel: &str, is_dir: bool| {
            self.visible(rel, is_dir)
                .map_err(|e| io::Error::other(e.to_string()))
        };
        let found = match self.dir.resolve_filtered(&path, follow_last, &mut visible) {
            Ok(found) => found,
            Err(kiln_rootfs::PathError::Io { source, .. })
                if source.raw_os_error() == Some(libc::ELOOP) =>
            {
                return Err(BuildError::SymlinkLoop { path });
            }
            Err(e) => return Err(e.into()),
        };
        let Some((resolved, fd)) = found else {
            return Ok(None);
        };
        let meta = fs::File::from(fd)
            .metadata()
            .map_err(|e| BuildError::io(self.root.join(&path), e))?;
        let resolved = resolved
            .into_iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        Ok(Some((resolved, meta)))
    }

    /// Whether a context-relative path survives the `.dockerignore`: not
    /// ignored, or a directory holding something re-included with `!`.
    fn visible(&self, rel: &str, is_dir: bool) -> Result<bool, BuildError> {
        if rel.is_empty() || !self.ignore.matches_or_parent_matches(rel) {
            return Ok(true);
        }
        if !is_dir || !self.ignore.has_exclusions() {
            return Ok(false);
        }
        let comps: Vec<String> = rel.split('/').map(str::to_owned).collect();
        for (name, meta) in self.read_dir_sorted(&comps)? {
            if self.visible(&format!("{rel}/{name}"), meta.is_dir())? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The entries of a context directory (not filtered), sorted by name.
    fn read_dir_sorted(&self, comps: &[String]) -> Result<Vec<(String, Metadata)>, BuildError> {
        let dir = self.root.join(comps.join("/"));
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| BuildError::io(&dir, e))? {
            let entry = entry.map_err(|e| BuildError::io(&dir, e))?;
            let meta =
                fs::symlink_metadata(entry.path()).map_err(|e| BuildError::io(entry.path(), e))?;
            out.push((entry.file_name().to_string_lossy().into_owned(), meta));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The not-found error for `pattern`, listing the closest existing
    /// directory along its fixed part.
    fn not_found(&self, pattern: &str, fixed: &[String]) -> BuildError {
        let mut dir = fixed.to_vec();
        let listing = loop {
            if let Ok(Some((real, meta))) = self.resolve_path(&dir, true)
                && meta.is_dir()
                && let Ok(entries) = self.read_dir_sorted(&real)
            {
                break Some((real, entries));
            }
            if dir.pop().is_none() {
                break None;
            }
        };
        let mut nearby = Vec::new();
        if let Some((real, entries)) = listing {
            let prefix: String = dir.iter().flat_map(|c| [c.as_str(), "/"]).collect();
            for (name, meta) in entries {
                let rel_real = real
                    .iter()
                    .chain(std::iter::once(&name))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/");
                if !self.visible(&rel_real, meta.is_dir()).unwrap_or(false) {
                    continue;
                }
                if nearby.len() == NEARBY_LIMIT {
                    nearby.push("...".to_owned());
                    break;
                }
                let slash = if meta.is_dir() { "/" } else { "" };
                nearby.push(format!("{prefix}{name}{slash}"));
            }
        }
        BuildError::SourceNotFound {
            pattern: pattern.to_owned(),
            nearby,
        }
    }

    /// Every file under a source: the source itself (`rel` empty) then, for
    /// a directory, everything below it that the `.dockerignore` and the
    /// source's `--exclude` patterns keep, in byte order of path.
    pub(crate) fn entries(&self, source: &Source) -> Result<Vec<Entry>, BuildError> {
        let abs = if source.path == "." {
            self.root.clone()
        } else {
            self.root.join(&source.path)
        };
        let meta = fs::symlink_metadata(&abs).map_err(|e| BuildError::io(&abs, e))?;
        let is_dir = meta.is_dir();
        let mut out = vec![Entry {
            rel: Vec::new(),
            abs: abs.clone(),
            meta,
        }];
        if is_dir {
            let matched = Matched {
                ctx: if source.path == "." {
                    String::new()
                } else {
                    source.path.clone()
                },
                ..Matched::default()
            };
            self.walk(source, &abs, &matched, b"", true, &mut out)?;
        }
        Ok(out)
    }

    /// Appends everything below `abs` to `out`, in byte order of path.
    ///
    /// Written for the no-op rebuild, where this walk is most of the time:
    /// entries are sorted by name before they are `lstat`ed (sorting names
    /// moves far fewer bytes than sorting metadata), and each entry is
    /// appended to `out` where it belongs rather than gathered in per-level
    /// lists and copied up.
    fn walk(
        &self,
        source: &Source,
        abs: &Path,
        parent: &Matched,
        rel: &[u8],
        parallel: bool,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let mut children = Vec::new();
        let mut dirs = 0;
        for child in fs::read_dir(abs).map_err(|e| BuildError::io(abs, e))? {
            let child = child.map_err(|e| BuildError::io(abs, e))?;
            // The type comes from the directory entry: no extra syscall.
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                dirs += 1;
            }
            children.push((child.file_name(), child));
        }
        children.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        // The first level with several subdirectories spreads them over
        // threads, each walking its share sequentially into its own list;
        // the lists are joined in name order, so the order is unchanged.
        let split = parallel && dirs > 1;
        let can_reinclude = self.ignore.has_exclusions()
            || source.excludes.as_ref().is_some_and(|m| m.has_exclusions());
        // Without patterns nothing is ignored: skip building match paths.
        let ignoring = !self.ignore.patterns().is_empty();
        let mut slots = Vec::new();
        out.reserve(children.len());
        for (name, child) in children {
            // `DirEntry::metadata` is an `lstat` relative to the open
            // directory: no path lookup from the root per file.
            let meta = child
                .metadata()
                .map_err(|e| BuildError::io(child.path(), e))?;
            drop(child);
            if !self.sockets_as_files && meta.file_type().is_socket() {
                continue;
            }
            let child_ctx = if !ignoring && !meta.is_dir() {
                String::new()
            } else if parent.ctx.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{}/{}", parent.ctx, name.to_string_lossy())
            };
            let mut child_rel = Vec::with_capacity(rel.len() + 1 + name.len());
            child_rel.extend_from_slice(rel);
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(name.as_bytes());
            let (ignored, ignore) = if ignoring {
                self.ignore
                    .matches_using_parent_results(&child_ctx, &parent.ignore)
                    .map_err(|source| BuildError::Pattern {
                        pattern: child_ctx.clone(),
                        source,
                    })?
            } else {
                (false, MatchInfo::default())
            };
            let rel_str = (source.excludes.is_some() || source.include.is_some())
                .then(|| String::from_utf8_lossy(&child_rel));
            let match_rel = |m: &PatternMatcher, info: &MatchInfo| {
                let rel_str = rel_str.as_deref().unwrap_or_default();
                m.matches_using_parent_results(rel_str, info)
                    .map_err(|source| BuildError::Pattern {
                        pattern: rel_str.to_owned(),
                        source,
                    })
            };
            let (excluded, exclude) = match &source.excludes {
                Some(m) => match_rel(m, &parent.exclude)?,
                None => (false, MatchInfo::default()),
            };
            // With --parents, a path is copied once the include pattern
            // matches it or a directory above it.
            let (pending, include) = match &source.include {
                Some(inc) => {
                    let (hit, info) = match_rel(&inc.matcher, &parent.include)?;
                    (!hit, info)
                }
                None => (false, MatchInfo::default()),
            };
            let hidden = ignored || excluded;
            let skipped = hidden || pending;
            // A directory the include pattern cannot reach below is not read.
            let unreachable = pending
                && meta.is_dir()
                && !source
                    .include
                    .as_ref()
                    .is_some_and(|inc| inc.may_match_below(rel_str.as_deref().unwrap_or_default()));
            let entry = Entry {
                rel: child_rel,
                abs: abs.join(&name),
                meta,
            };
            if !entry.meta.is_dir() {
                if skipped {
                    continue;
                }
                if split {
                    slots.push(Slot::Leaf(entry));
                } else {
                    out.push(entry);
                }
                continue;
            }
            // A skipped directory is entered only if something below it
            // can be kept: re-included by a `!` pattern, or matched by the
            // include pattern.
            if (hidden && !can_reinclude) || unreachable {
                continue;
            }
            let matched = Matched {
                ctx: child_ctx,
                ignore,
                exclude,
                include,
            };
            if split {
                slots.push(Slot::Dir {
                    entry,
                    matched,
                    skipped,
                });
                continue;
            }
            let at = out.len();
            let (sub_abs, sub_rel) = (entry.abs.clone(), entry.rel.clone());
            out.push(entry);
            self.walk(source, &sub_abs, &matched, &sub_rel, parallel, out)?;
            // A skipped directory exists only to hold what is kept below.
            if skipped && out.len() == at + 1 {
                out.truncate(at);
            }
        }
        if !split {
            return Ok(());
        }
        let jobs: Vec<_> = slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::Dir { entry, matched, .. } => Some((entry, matched)),
                Slot::Leaf(_) => None,
            })
            .collect();
        let subtrees = par_map(&jobs, |(entry, matched)| {
            let mut sub = Vec::new();
            self.walk(source, &entry.abs, matched, &entry.rel, false, &mut sub)
                .map(|()| sub)
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        out.reserve(slots.len() + subtrees.iter().map(Vec::len).sum::<usize>());
        let mut subtrees = subtrees.into_iter();
        for slot in slots {
            match slot {
                Slot::Leaf(entry) => out.push(entry),
                Slot::Dir { entry, skipped, .. } => {
                    let sub = subtrees.next().unwrap_or_default();
                    // A skipped directory exists only to hold what is kept below.
                    if !(skipped && sub.is_empty()) {
                        out.push(entry);
                        out.extend(sub);
                    }
                }
            }
        }
        Ok(())
    }

    /// The content digest of a set of sources, for cache keys: SHA-256 over
    /// a length-prefixed encoding of, per source, its destination name and
    /// then every file under it in path order with its path relative to the
    /// source, type, mode bits, uid, gid, symlink target and content
    /// digest. Modification times are deliberately left out, so touching a
    /// file does not invalidate the cache.
    pub fn digest_sources(
        &self,
        sources: &[Source],
        cache: &mut StatCache,
    ) -> Result<Digest, BuildError> {
        let mut hasher = KeyHasher::new();
        put(&mut hasher, b"kiln-sources-v1");
        put_u64(&mut hasher, sources.len() as u64);
        for source in sources {
            put(&mut hasher, source.dest.as_bytes());
            put(&mut hasher, &[u8::from(source.copy_contents)]);
            let entries = self.entries(source)?;
            let digests = file_digests(&entries, cache)?;
            put_u64(&mut hasher, entries.len() as u64);
            for (entry, digest) in entries.iter().zip(digests) {
                let kind = self.kind(&entry.meta);
                put(&mut hasher, &entry.rel);
                put(&mut hasher, &[kind.tag()]);
                put_u64(&mut hasher, u64::from(entry.meta.mode() & 0o7777));
                put_u64(&mut hasher, u64::from(entry.meta.uid()));
                put_u64(&mut hasher, u64::from(entry.meta.gid()));
                match kind {
                    FileType::Symlink => {
                        let target =
                            fs::read_link(&entry.abs).map_err(|e| BuildError::io(&entry.abs, e))?;
                        put(&mut hasher, target.as_os_str().as_bytes());
                    }
                    FileType::File => put_sha256(&mut hasher, &digest),
                    FileType::Other => put_u64(&mut hasher, entry.meta.rdev()),
                    FileType::Dir => {}
                }
            }
        }
        Ok(hasher.finish())
    }

    /// Every file and symlink `sources` select, as
    /// [`digest_sources`](Self::digest_sources) reads them, with a
    /// fingerprint of what that digest holds of each: for `--explain` to
    /// name the files that changed between two builds. Directories are
    /// left out.
    pub fn list_sources(
        &self,
        sources: &[Source],
        cache: &mut StatCache,
    ) -> Result<Vec<SourceFile>, BuildError> {
        let mut out = Vec::new();
        for source in sources {
            let entries = self.entries(source)?;
            let digests = file_digests(&entries, cache)?;
            for (entry, digest) in entries.iter().zip(digests) {
                let kind = self.kind(&entry.meta);
                let content = match kind {
                    FileType::Dir => continue,
                    FileType::Symlink => {
                        let target =
                            fs::read_link(&entry.abs).map_err(|e| BuildError::io(&entry.abs, e))?;
                        kiln_store::digest::digest_bytes(target.as_os_str().as_bytes())
                            .encoded()
                            .get(..32)
                            .unwrap_or("")
                            .to_owned()
                    }
                    FileType::File => hex16(&digest),
                    FileType::Other => format!("dev:{}", entry.meta.rdev()),
                };
                let rel = String::from_utf8_lossy(&entry.rel);
                let path = match (source.dest.as_str(), rel.as_ref()) {
                    ("", rel) => rel.to_owned(),
                    (dest, "") => dest.to_owned(),
                    (dest, rel) => format!("{dest}/{rel}"),
                };
                out.push(SourceFile {
                    path,
                    content,
                    meta: format!(
                        "{}:{:o}:{}:{}",
                        char::from(kind.tag()),
                        entry.meta.mode() & 0o7777,
                        entry.meta.uid(),
                        entry.meta.gid()
                    ),
                });
            }
        }
        Ok(out)
    }
}

/// One file of a sources listing ([`BuildContext::list_sources`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    /// Where it lands, relative to the destination.
    pub path: String,
    /// The first 128 bits of its content digest (of the target for a
    /// symlink), in hex.
    pub content: String,
    /// Type, mode bits, uid and gid.
    pub meta: String,
}

/// The first 16 bytes of a digest in hex: enough to tell two versions of
/// one file apart, at half the size.
fn hex16(raw: &[u8; 32]) -> String {
    let mut out = String::with_capacity(32);
    for b in raw.iter().take(16) {
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{b:02x}"));
    }
    out
}

/// The SHA-256 of no bytes: the content of a socket sent as a file.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The raw content digest of every regular file among `entries` (zeros for
/// other entries, the empty content's for sockets), from the cache where it
/// is trusted; the rest are read in parallel, so a cold digest of many
/// files uses every core.
fn file_digests(entries: &[Entry], cache: &mut StatCache) -> Result<Vec<[u8; 32]>, BuildError> {
    let mut out = vec![[0u8; 32]; entries.len()];
    let mut misses = Vec::new();
    for (i, (entry, slot)) in entries.iter().zip(&mut out).enumerate() {
        let file_type = entry.meta.file_type();
        if file_type.is_socket() {
            *slot = EMPTY_SHA256;
            continue;
        }
        if !file_type.is_file() {
            continue;
        }
        match cache.cached(&entry.abs, &entry.meta) {
            Some(raw) => *slot = raw,
            None => misses.push(i),
        }
    }
    let hashed: Vec<(usize, u128, [u8; 32])> = par_map(&misses, |&i| match entries.get(i) {
        Some(e) => hash_file(&e.abs).map(|(at, raw)| Some((i, at, raw))),
        None => Ok(None),
    })
    .into_iter()
    .filter_map(Result::transpose)
    .collect::<Result<_, _>>()?;
    for (i, hashed_at, raw) in hashed {
        if let (Some(entry), Some(slot)) = (entries.get(i), out.get_mut(i)) {
            cache.record(&entry.abs, &entry.meta, hashed_at, raw);
            *slot = raw;
        }
    }
    Ok(out)
}

/// `f` over `items` on a few scoped threads, results in item order.
///
/// Plain threads rather than rayon: the engine calls this while holding
/// the stat cache's lock on its own rayon pool, where a waiting worker
/// could steal another stage's job that takes the same lock.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn compile(patterns: &[String]) -> Result<PatternMatcher, BuildError> {
    PatternMatcher::new(patterns).map_err(|source| BuildError::Pattern {
        pattern: source.pattern().unwrap_or_default().to_owned(),
        source,
    })
}

/// A path's components with `.` removed and `..` clamped at the root, as
/// Go's `path.Clean("/" + p)` then relative.
fn clean_components(pattern: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for comp in pattern.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_owned()),
        }
    }
    out
}

/// Whether a path component needs matching: an unescaped `*`, `?` or `[`,
/// or a `\` escape (so that `\*` matches a file named `*`).
fn has_wildcards(comp: &str) -> bool {
    comp.contains(['*', '?', '[', '\\'])
}

/// dockerfile2llb's `containsWildcards`: an unescaped `*`, `?` or `[`.
fn contains_wildcards(text: &str) -> bool {
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                bytes.next();
            }
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
    }
    false
}

fn join_or_dot(comps: &[String]) -> String {
    if comps.is_empty() {
        ".".to_owned()
    } else {
        comps.join("/")
    }
}

/// How many bytes [`KeyHasher`] gathers before it hashes them.
const KEY_BUFFER: usize = 64 * 1024;

/// A SHA-256 fed through a buffer: a sources digest is made of hundreds of
/// thousands of small fields, and one large update costs far less than
/// that many tiny ones.
struct KeyHasher {
    inner: Hasher,
    buf: Vec<u8>,
}

impl KeyHasher {
    fn new() -> Self {
        Self {
            inner: Hasher::new(),
            buf: Vec::new(),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > KEY_BUFFER {
            self.inner.update(&self.buf);
            self.buf.clear();
        }
        if bytes.len() >= KEY_BUFFER {
            self.inner.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    fn finish(mut self) -> Digest {
        self.inner.update(&self.buf);
        self.inner.finish()
    }
}

fn put(hasher: &mut KeyHasher, bytes: &[u8]) {
    put_u64(hasher, bytes.len() as u64);
    hasher.update(bytes);
}

fn put_u64(hasher: &mut KeyHasher, value: u64) {
    hasher.update(&value.to_be_bytes());
}

/// How long after a file's last change its cached digest is not trusted:
/// file timestamps come from a coarse clock (one tick is at most 10 ms), so
/// a write in the same tick as the one we hashed would leave ctime unchanged.
const RACY_WINDOW: Duration = Duration::from_millis(100);

/// What the stat cache knows about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StatEntry {
    /// Where the path is in [`StatCache::keys`].
    key: std::ops::Range<usize>,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
    /// Wall-clock time (ns since the epoch) just before the content was read.
    hashed_at: u128,
    /// The raw SHA-256 of the contents.
    digest: [u8; 32],
    /// Looked up since the cache was created or loaded (not saved).
    seen: bool,
}

impl StatEntry {
    fn new(
        key: std::ops::Range<usize>,
        meta: &Metadata,
        hashed_at: u128,
        digest: [u8; 32],
    ) -> Self {
        Self {
            key,
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            dev: meta.dev(),
            hashed_at,
            digest,
            seen: true,
        }
    }

    fn matches(&self, meta: &Metadata) -> bool {
        self.size == meta.size()
            && self.mtime == (meta.mtime(), meta.mtime_nsec())
            && self.ctime == (meta.ctime(), meta.ctime_nsec())
            && self.ino == meta.ino()
            && self.dev == meta.dev()
    }

    /// Whether the file last changed early enough before it was hashed that
    /// any later change must show in its ctime.
    fn settled(&self) -> bool {
        let Ok(secs) = u64::try_from(self.ctime.0) else {
            return true;
        };
        let Ok(nanos) = u32::try_from(self.ctime.1) else {
            return false;
        };
        let ctime = Duration::new(secs, nanos).as_nanos();
        ctime.saturating_add(RACY_WINDOW.as_nanos()) < self.hashed_at
    }
}

/// `FxHash` (as in rustc): the keys are local paths, not attacker-chosen, so
/// `SipHash`'s flooding resistance buys nothing and costs a no-op rebuild
/// measurable time over 20,000 lookups.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write(&n.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The `FxHash` of a path's bytes, as the stat cache's table keys it.
fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut hasher = FxHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

/// First bytes of a saved stat cache; a file without them (an older JSON
/// cache, garbage) loads as an empty cache.
const STAT_CACHE_MAGIC: &[u8; 8] = b"KILNSTC\0";

/// Bumped when the entry layout changes.
const STAT_CACHE_VERSION: u32 = 1;

/// Bytes of one saved entry after its path: size, mtime (2), ctime (2),
/// inode, device, `hashed_at` (16), digest (32).
const STAT_ENTRY_FIXED: usize = 8 * 7 + 16 + 32;

/// Content digests of files keyed by what `stat` says about them (path,
/// size, mtime, ctime, inode, device), so unchanged files are not read
/// again. A content change always moves ctime, even when mtime is forced
/// back.
///
/// Saved in a compact binary format: the magic, a little-endian `u32`
/// version and `u64` entry count, then per entry a `u32` path length, the
/// path bytes and the fixed fields (digest as 32 raw bytes).
///
/// In memory the paths stay in one buffer (a loaded cache keeps the file's
/// bytes as they are) and a table of entry indices finds them: loading
/// 20,000 entries costs one read and no allocation per path, which matters
/// on a no-op rebuild.
#[derive(Debug, Default)]
pub struct StatCache {
    /// Path bytes: the loaded file, then the paths recorded since.
    keys: Vec<u8>,
    entries: Vec<StatEntry>,
    /// Indices into `entries`, hashed by path.
    table: hashbrown::HashTable<usize>,
    /// Files whose contents were read through this cache.
    reads: u64,
}

/// Reads a saved cache front to back; `None` at the first byte out of place.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_le_bytes)
    }

    fn u128(&mut self) -> Option<u128> {
        self.array().map(u128::from_le_bytes)
    }
}

impl StatCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a cache saved by [`save`](Self::save); a missing file, or one
    /// that is truncated, corrupt or in an older format, is an empty cache
    /// (it only costs reading the files again).
    pub fn load(path: &Path) -> Result<Self, BuildError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(e) => return Err(BuildError::io(path, e)),
        };
        Ok(Self::decode(bytes).unwrap_or_else(|| {
            log::debug!("stat cache {}: unreadable, starting empty", path.display());
            Self::new()
        }))
    }

    fn decode(bytes: Vec<u8>) -> Option<Self> {
        let mut cur = Cursor(&bytes);
        if cur.take(STAT_CACHE_MAGIC.len())? != STAT_CACHE_MAGIC || cur.u32()? != STAT_CACHE_VERSION
        {
            return None;
        }
        let count = usize::try_from(cur.u64()?).ok()?;
        // The count is not trusted for the allocation: each entry takes at
        // least its fixed bytes and path length.
        let room = cur.0.len() / (4 + STAT_ENTRY_FIXED);
        if count > room {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        let mut table = hashbrown::HashTable::with_capacity(count);
        for _ in 0..count {
            let len = usize::try_from(cur.u32()?).ok()?;
            let start = bytes.len() - cur.0.len();
            let key = cur.take(len)?;
            let entry = StatEntry {
                key: start..start + len,
                size: cur.u64()?,
                mtime: (cur.i64()?, cur.i64()?),
                ctime: (cur.i64()?, cur.i64()?),
                ino: cur.u64()?,
                dev: cur.u64()?,
                hashed_at: cur.u128()?,
                digest: cur.array()?,
                seen: false,
            };
            // A path saved twice (only a hand-made file has that) keeps
            // its first entry.
            let hash = fx_hash(key);
            let index = entries.len();
            if let hashbrown::hash_table::Entry::Vacant(slot) = table.entry(
                hash,
                |&i: &usize| {
                    entries
                        .get(i)
                        .is_some_and(|e: &StatEntry| bytes.get(e.key.clone()) == Some(key))
                },
                |&i: &usize| {
                    entries
                        .get(i)
                        .and_then(|e: &StatEntry| bytes.get(e.key.clone()))
                        .map_or(0, fx_hash)
                },
            ) {
                slot.insert(index);
                entries.push(entry);
            }
        }
        if !cur.0.is_empty() {
            return None;
        }
        Some(Self {
            keys: bytes,
            entries,
            table,
            reads: 0,
        })
    }

    /// The path bytes of an entry.
    fn key_of(&self, entry: &StatEntry) -> &[u8] {
        self.keys.get(entry.key.clone()).unwrap_or_default()
    }

    /// The index of `path`'s entry.
    fn find(&self, path: &[u8]) -> Option<usize> {
        self.table
            .find(fx_hash(path), |&i| {
                self.entries.get(i).is_some_and(|e| self.key_of(e) == path)
            })
            .copied()
    }

    fn encode(&self) -> Result<Vec<u8>, BuildError> {
        let mut order: Vec<&StatEntry> = self.entries.iter().collect();
        // Sorted, so the same cache always saves the same bytes.
        order.sort_unstable_by(|a, b| self.key_of(a).cmp(self.key_of(b)));
        let paths: usize = order.iter().map(|e| e.key.len()).sum();
        let mut out = Vec::with_capacity(20 + paths + order.len() * (4 + STAT_ENTRY_FIXED));
        out.extend_from_slice(STAT_CACHE_MAGIC);
        out.extend_from_slice(&STAT_CACHE_VERSION.to_le_bytes());
        out.extend_from_slice(&(order.len() as u64).to_le_bytes());
        for e in order {
            let key = self.key_of(e);
            let len = u32::try_from(key.len()).map_err(|_| {
                BuildError::Internal(format!(
                    "stat cache: path of {} bytes is too long",
                    key.len()
                ))
            })?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&e.size.to_le_bytes());
            for v in [e.mtime.0, e.mtime.1, e.ctime.0, e.ctime.1] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [e.ino, e.dev] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&e.hashed_at.to_le_bytes());
            out.extend_from_slice(&e.digest);
        }
        Ok(out)
    }

    /// Writes the cache atomically (a temporary file in `staging`, on the
    /// same file system, renamed over `path`), without fsync: a cache lost
    /// in a power cut only costs reading the files again.
    pub fn save(&self, staging: &Path, path: &Path) -> Result<(), BuildError> {
        let bytes = self.encode()?;
        kiln_store::store::write_replace(staging, path, &bytes)?;
        Ok(())
    }

    /// How many files' contents were read through this cache since it was
    /// created or loaded.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Forgets every file not looked up since the cache was created or
    /// loaded (deleted or no longer part of a source), so a cache saved
    /// after a build does not grow with files that are gone.
    pub fn prune_unseen(&mut self) {
        if self.entries.iter().all(|e| e.seen) {
            return;
        }
        let old = std::mem::take(self);
        for e in old.entries.iter().filter(|e| e.seen) {
            self.insert(old.key_of(e), e.clone());
        }
        self.reads = old.reads;
    }

    /// Adds or replaces `path`'s entry (its `key` range is set here).
    fn insert(&mut self, path: &[u8], mut entry: StatEntry) {
        if let Some(i) = self.find(path)
            && let Some(slot) = self.entries.get_mut(i)
        {
            entry.key = slot.key.clone();
            *slot = entry;
            return;
        }
        let start = self.keys.len();
        self.keys.extend_from_slice(path);
        entry.key = start..self.keys.len();
        let index = self.entries.len();
        self.entries.push(entry);
        let (entries, keys) = (&self.entries, &self.keys);
        self.table.insert_unique(fx_hash(path), index, |&i| {
            entries
                .get(i)
                .and_then(|e| keys.get(e.key.clone()))
                .map_or(0, fx_hash)
        });
    }

    /// The number of files the cache knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache knows no file.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The SHA-256 of a regular file's contents, from the cache when `meta`
    /// (the file's `lstat`) matches what was recorded.
    pub fn content_digest(&mut self, path: &Path, meta: &Metadata) -> Result<Digest, BuildError> {
        let raw = if let Some(raw) = self.cached(path, meta) {
            raw
        } else {
            let (hashed_at, raw) = hash_file(path)?;
            self.record(path, meta, hashed_at, raw);
            raw
        };
        Ok(Digest::from_sha256(&raw))
    }

    /// The cached raw digest of `path` if `meta` still matches and the entry
    /// is trusted; marks the path seen either way.
    fn cached(&mut self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        let index = self.find(path.as_os_str().as_bytes())?;
        let entry = self.entries.get_mut(index)?;
        entry.seen = true;
        (entry.matches(meta) && entry.settled()).then_some(entry.digest)
    }

    /// Records a file just read.
    fn record(&mut self, path: &Path, meta: &Metadata, hashed_at: u128, digest: [u8; 32]) {
        self.reads += 1;
        let entry = StatEntry::new(0..0, meta, hashed_at, digest);
        self.insert(path.as_os_str().as_bytes(), entry);
    }
}

/// Reads and hashes a file: the wall-clock time (ns since the epoch) just
/// before reading, and the raw SHA-256.
fn hash_file(path: &Path) -> Result<(u128, [u8; 32]), BuildError> {
    let hashed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // The walk lstat'ed a regular file here: a symlink swapped in since is
    // not followed.
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    }
    .map_err(|e| BuildError::io(path, e))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BuildError::io(path, e)),
        };
        hasher.update(buf.get(..n).unwrap_or(&[]));
    }
    let digest = hasher.finish();
    let raw = decode_hex32(digest.encoded()).ok_or_else(|| {
        BuildError::Internal(format!("sha256 of {} is not 32 bytes", path.display()))
    })?;
    Ok((hashed_at, raw))
}

/// 64 lowercase hex digits to bytes.
fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *slot = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

/// Adds a file digest as `put` of its `sha256:<hex>` string, without
/// building the string.
fn put_sha256(hasher: &mut KeyHasher, raw: &[u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 71];
    let (prefix, hex) = text.split_at_mut(7);
    prefix.copy_from_slice(b"sha256:");
    for (pair, b) in hex.chunks_exact_mut(2).zip(raw) {
        if let [hi, lo] = pair {
            *hi = HEX[usize::from(b >> 4)];
            *lo = HEX[usize::from(b & 0xf)];
        }
    }
    put(hasher, &text);
}
