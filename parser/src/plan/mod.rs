//! Stages to a build plan: variable expansion in each stage's scope (global
//! ARGs, ARG/ENV in the stage, build-arg overrides, predefined platform
//! ARGs), base and `--from` resolution, the stage graph with cycle and
//! ordering checks, `--target` pruning and ONBUILD triggers, as BuildKit's
//! `dockerfile2llb` does before it builds anything.

mod env;
mod expand;
mod graph;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use crate::instructions::Healthcheck;
pub use crate::mount::{NetworkMode, SecurityMode};
pub use env::Environment;
pub use graph::{Base, Dependency, DependencyKind, Source, context_name};

use crate::ast::{self, Dockerfile, Warning};
use crate::error::{Error, ErrorKind};
use crate::instructions::{self, Instruction, Stage};
use crate::mount::Mount;
use crate::source::Span;
use crate::values::{Chmod, Platform};

/// The PATH Docker sets when an image has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The proxy variables BuildKit hands every RUN from the build args
/// (`proxyEnvFromBuildArgs`, `llb.WithProxy`), each under its upper- and
/// lower-case name, without an ARG and outside the cache key and history.
pub const PROXY_VARS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// Whether a build arg is one of [`PROXY_VARS`]: BuildKit matches the
/// name in any case (Go's `strings.EqualFold`).
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_VARS
        .iter()
        .any(|p| crate::golang::equal_fold(p, name))
}

/// The RUN environment of the proxy build args, as BuildKit's executor
/// adds it (`proxyEnvList`): for each of [`PROXY_VARS`] with a non-empty
/// value, `NAME=v` then `name=v`, in that order. Where several spellings
/// of one name are given (BuildKit reads them from a map, in random
/// order), the last in byte order wins.
fn proxy_env(build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for var in PROXY_VARS {
        let value = build_args
            .iter()
            .filter(|(k, _)| crate::golang::equal_fold(var, k))
            .map(|(_, v)| v)
            .next_back();
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            env.push((var.to_owned(), v.clone()));
            env.push((var.to_ascii_lowercase(), v.clone()));
        }
    }
    env
}

/// What the plan knows of an image used as a base or `--from` source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BaseConfig {
    /// `Config.Env`.
    pub env: Vec<String>,
    /// `Config.WorkingDir`.
    pub working_dir: String,
    /// `Config.User`.
    pub user: String,
    /// `Config.Shell`.
    pub shell: Vec<String>,
    /// `Config.OnBuild`.
    pub on_build: Vec<String>,
}

/// Looks up image configs (the builder answers from the image store; the
/// plan works without them, with unknown base environments).
pub trait BaseImages {
    /// The config of `reference` (normalised, e.g.
    /// `docker.io/library/busybox:latest`), if known.
    fn config(&self, reference: &str) -> Option<BaseConfig>;
}

/// A `--build-context` as planning sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NamedContext {
    /// An image in the store (`docker-image://`, or an OCI layout the
    /// builder loaded): used as `FROM` uses an image.
    Image {
        /// The reference the store resolves.
        reference: String,
    },
    /// A local directory, read as the build context is.
    Local,
}

/// Inputs of planning besides the Dockerfile.
#[derive(Default)]
pub struct PlanOptions<'a> {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// The platform of the result (default: this machine).
    pub target_platform: Option<Platform>,
    /// The platform doing the build (default: this machine).
    pub build_platform: Option<Platform>,
    /// Image configs, when known.
    pub base_images: Option<&'a dyn BaseImages>,
    /// `--build-context` values, by name as [`context_name`] gives it.
    pub contexts: BTreeMap<String, NamedContext>,
}

/// A build plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The Dockerfile's display name.
    pub file: String,
    /// The escape character (`# escape=`), for expanding step names.
    pub escape: char,
    /// Global ARGs (before the first FROM) and predefined ARGs, with values.
    pub global_args: Vec<(String, String)>,
    /// Every stage; `needed` marks those the target needs.
    pub stages: Vec<PlannedStage>,
    /// Index of the target stage.
    pub target: usize,
    /// The needed stages, dependencies first.
    pub build_order: Vec<usize>,
    /// Images the needed stages pull from (bases and `--from` sources),
    /// normalised, in order of first use.
    pub external_images: Vec<String>,
    /// `--build-arg` names no ARG declares.
    pub unused_build_args: Vec<String>,
    /// What the proxy build args (`HTTP_PROXY`, `no_proxy`, ... in any
    /// case) add to every RUN's environment: both spellings of each
    /// name, after (and over) the stage's own variables. They stay out of
    /// the image history and cache keys, as in BuildKit.
    pub proxy_env: Vec<(String, String)>,
    /// Warnings (undefined variables, empty continuation lines, ...).
    pub warnings: Vec<Warning>,
}

/// A stage of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStage {
    /// Index (0-based).
    pub index: usize,
    /// `AS` name, lowercase.
    pub name: Option<String>,
    /// What it starts from.
    pub base: Base,
    /// `FROM --platform`, expanded and parsed.
    pub platform: Option<Platform>,
    /// Stages and images it needs.
    pub dependencies: Vec<Dependency>,
    /// Whether the target needs it.
    pub needed: bool,
    /// The `--build-context` that replaces this stage (its base is the
    /// context's; it has no steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The FROM line.
    pub from_code: String,
    /// Where the FROM is.
    pub span: Span,
    /// Expanded steps (ONBUILD triggers of the base first); empty when the
    /// stage is not needed.
    pub steps: Vec<Step>,
    /// The stage's instructions, unexpanded.
    #[serde(skip)]
    pub instructions: Vec<Instruction>,
}

impl PlannedStage {
    /// The name BuildKit shows: the stage name or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// One step of a stage, arguments expanded.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What to do.
    #[serde(flatten)]
    pub kind: StepKind,
    /// The instruction as written.
    pub code: String,
    /// Where it is.
    pub span: Span,
    /// An ONBUILD trigger inherited from the base.
    pub onbuild: bool,
}

/// A `--mount` of RUN, expanded, with its `from` resolved.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedMount {
    /// The mount.
    #[serde(flatten)]
    pub mount: Mount,
    /// Where `from=` points.
    pub source: Option<Source>,
}

/// A COPY/ADD heredoc source, expanded when its delimiter was unquoted.
#[derive(Debug, Clone, Serialize)]
pub struct InlineFile {
    /// File name (the heredoc delimiter).
    pub name: String,
    /// Content.
    pub content: String,
}

/// COPY and ADD, expanded.
#[derive(Debug, Clone, Serialize)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each bool is one boolean flag of COPY/ADD"
)]
pub struct FileCopy {
    /// Source paths, patterns or URLs.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineFile>,
    /// Destination as written (relative to `workdir` when not absolute).
    pub dest: String,
    /// The working directory at this step.
    pub workdir: String,
    /// Where sources come from (`None`: the build context).
    pub from: Option<Source>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`, parsed.
    pub chmod: Option<Chmod>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude`.
    pub excludes: Vec<String>,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack` (ADD only; `None` = default: local archives unpack).
    pub unpack: Option<bool>,
    /// ADD (archives unpack, URLs download) rather than COPY.
    pub is_add: bool,
}

/// What a step does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase", tag = "instruction")]
pub enum StepKind {
    /// RUN.
    Run {
        /// The argv to execute (the SHELL prepended for shell form).
        argv: Vec<String>,
        /// A heredoc script to create at `/dev/pipes/<name>` first.
        script: Option<(String, String)>,
        /// For a command that is a single heredoc, the first line of its
        /// body (with `...` when there are more), which BuildKit's step
        /// name shows.
        heredoc_summary: Option<String>,
        /// Mounts.
        mounts: Vec<PlannedMount>,
        /// `--network`.
        network: NetworkMode,
        /// `--security`.
        security: SecurityMode,
        /// Working directory.
        workdir: String,
        /// User.
        user: String,
    },
    /// CMD: the config's `Cmd`.
    Cmd {
        /// The argv (SHELL prepended for shell form).
        argv: Vec<String>,
    },
    /// ENTRYPOINT: the config's `Entrypoint`.
    Entrypoint {
        /// The argv (SHELL prepended for shell form); empty: none.
        argv: Vec<String>,
    },
    /// ENV.
    Env {
        /// Variables set, in order.
        pairs: Vec<(String, String)>,
    },
    /// LABEL.
    Label {
        /// Labels set, in order.
        pairs: Vec<(String, String)>,
    },
    /// ARG.
    Arg {
        /// Names and the values they took (`None`: declared, no value).
        args: Vec<(String, Option<String>)>,
    },
    /// COPY.
    Copy(FileCopy),
    /// ADD.
    Add(FileCopy),
    /// WORKDIR.
    Workdir {
        /// The new working directory, absolute.
        path: String,
    },
    /// USER.
    User {
        /// `user[:group]`.
        user: String,
    },
    /// VOLUME.
    Volume {
        /// Paths.
        paths: Vec<String>,
    },
    /// EXPOSE.
    Expose {
        /// `port/proto` entries.
        ports: Vec<String>,
    },
    /// STOPSIGNAL.
    Stopsignal {
        /// The signal as written (after expansion).
        signal: String,
    },
    /// HEALTHCHECK.
    Healthcheck(Healthcheck),
    /// SHELL.
    Shell {
        /// The shell argv.
        shell: Vec<String>,
    },
    /// MAINTAINER.
    Maintainer {
        /// Author.
        name: String,
    },
    /// ONBUILD: recorded in the image config.
    Onbuild {
        /// The trigger.
        expression: String,
    },
}

/// Plans the build of `df`.
pub fn plan(df: &Dockerfile, options: &PlanOptions<'_>) -> Result<Plan, Error> {
    let parsed = instructions::parse_stages(df)?;
    let mut warnings = df.warnings.clone();
    warnings.extend(parsed.warnings.iter().cloned());
    if parsed.stages.is_empty() {
        let span = parsed
            .meta_args
            .last()
            .map_or(Span::point(1, 1), |i| i.span);
        return Err(df
            .error(span, ErrorKind::NoStages)
            .expecting("a FROM instruction"));
    }
    check_duplicate_names(df, &parsed.stages)?;
    let target_platform = options
        .target_platform
        .clone()
        .unwrap_or_else(Platform::host);
    let build_platform = options
        .build_platform
        .clone()
        .unwrap_or_else(Platform::host);
    // The name only: BuildKit checks that the target exists after the
    // global ARGs and the FROM lines, whose errors come first.
    let target_stage = options
        .target
        .as_deref()
        .or_else(|| parsed.stages.last().and_then(Stage::name));
    let mut globals = expand::predefined_args(
        &build_platform,
        &target_platform,
        target_stage,
        &options.build_args,
    );
    let mut declared: BTreeSet<String> = BTreeSet::new();
    expand::meta_args(
        df,
        &parsed.meta_args,
        &options.build_args,
        &mut globals,
        &mut declared,
    )?;

    let mut graph = graph::Graph::build(
        df,
        &parsed.stages,
        &globals,
        graph::Contexts(&options.contexts),
        &mut warnings,
    )?;
    let target = graph::find_target(df, &parsed.stages, options.target.as_deref())?;
    let mut planner = expand::Planner::new(df, options, &globals, &mut graph, &mut warnings);
    let mut stages = planner.run(&parsed.stages, target, &mut declared)?;
    // Hand the typed instructions over instead of cloning them.
    for (planned, stage) in stages.iter_mut().zip(parsed.stages) {
        planned.instructions = stage.instructions;
    }
    let build_order = graph.build_order(target);
    let external_images = graph::Graph::external_images(&stages);

    let unused_build_args = options
        .build_args
        .keys()
        .filter(|k| !declared.contains(*k) && !is_predefined_arg(k))
        .cloned()
        .collect();
    let global_args = globals.vars().to_vec();
    let proxy_env = proxy_env(&options.build_args);
    Ok(Plan {
        file: df.file.clone(),
        escape: df.escape,
        global_args,
        stages,
        target,
        build_order,
        external_images,
        unused_build_args,
        proxy_env,
        warnings,
    })
}

/// Build args that need no ARG: proxies (in any case), platforms,
/// `TARGETSTAGE`, BuildKit's own.
pub fn is_predefined_arg(name: &str) -> bool {
    is_proxy_arg(name)
        || expand::PREDEFINED_ARGS.contains(&name)
        || name.starts_with("BUILDKIT_")
        || name == "SOURCE_DATE_EPOCH"
}

fn check_duplicate_names(df: &Dockerfile, stages: &[Stage]) -> Result<(), Error> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for stage in stages {
        let Some(name) = stage.name() else { continue };
        if let Some(first) = seen.insert(name, stage.from.start_line) {
            let span = stage
                .from_args()
                .and_then(|f| f.name.as_ref())
                .map_or(stage.from.span, |w| w.span);
            return Err(df
                .error(
                    span,
                    ErrorKind::DuplicateStageName {
                        name: name.to_owned(),
                    },
                )
                .expecting(format!("a name not already used on line {first}")));
        }
    }
    Ok(())
}

/// Parses `text` and plans it: the whole front end in one call.
pub fn plan_dockerfile(
    file: &str,
    text: &str,
    options: &PlanOptions<'_>,
) -> Result<(Dockerfile, Plan), Error> {
    let df = ast::parse(file, text)?;
    let plan = plan(&df, options)?;
    Ok((df, plan))
}

#[cfg(test)]
mod tests;
