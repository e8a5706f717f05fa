//! `kiln parse`: read a Dockerfile as `docker build` would and show the
//! build plan (default), the AST (`--ast`) or the typed plan as JSON
//! (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use kiln_parser::ast;
use kiln_parser::dockerignore;
use kiln_parser::plan::{
    self, Base, FileCopy, Plan, PlanOptions, PlannedStage, Source, Step, StepKind,
};
use kiln_parser::values::Platform;
use serde::Serialize;

use crate::output::print_warning;

/// Arguments of `kiln parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile); `-` reads it
    /// from stdin.
    #[arg(short = 'f', long = "file", value_name = "DOCKERFILE")]
    file: Option<PathBuf>,

    /// The stage to build; stages it does not need are left out.
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,

    /// A build-time variable; `KEY` alone takes the value from the
    /// environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,

    /// The platform to build for (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,

    /// Print the AST in BuildKit's notation and stop after parsing.
    #[arg(long, conflicts_with = "json")]
    ast: bool,

    /// Print the typed build plan as JSON.
    #[arg(long)]
    json: bool,

    /// The build context directory.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    context: PathBuf,
}

/// What `--json` prints.
#[derive(Serialize)]
struct JsonOutput<'a> {
    dockerfile: String,
    context: String,
    ignore_file: Option<String>,
    ignore_patterns: Vec<String>,
    directives: &'a [ast::Directive],
    plan: &'a Plan,
}

/// Parses `--build-arg` values as `docker build` does.
pub fn parse_build_args(values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for value in values {
        let (key, val) = match value.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (value.as_str(), std::env::var(value).ok()),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("invalid --build-arg {value:?}: expected KEY=VALUE or KEY");
        }
        if let Some(val) = val {
            out.insert(key.to_owned(), val);
        }
    }
    Ok(out)
}

/// Reads the Dockerfile: `-` from stdin, else the path.
fn read_dockerfile(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("failed to read the Dockerfile from stdin")?;
        return Ok(("-".to_owned(), bytes));
    }
    // `./Dockerfile` reads better as `Dockerfile` in messages.
    let name = display_path(path);
    let bytes =
        std::fs::read(path).with_context(|| format!("failed to read Dockerfile {name:?}"))?;
    Ok((name, bytes))
}

/// A path as the user would write it (`./x` as `x`).
fn display_path(path: &Path) -> String {
    path.strip_prefix(".").unwrap_or(path).display().to_string()
}

/// Runs `kiln parse`.
pub fn run(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    if !args.context.is_dir() {
        bail!(
            "unable to prepare context: path {:?} not found or not a directory",
            args.context.display().to_string()
        );
    }
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let (name, bytes) = read_dockerfile(&dockerfile)?;
    let df = ast::parse_bytes(&name, &bytes)?;
    if args.ast {
        for warning in &df.warnings {
            print_warning(&name, warning);
        }
        std::io::stdout().lock().write_all(df.dump().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    df.check_options()?;
    let (ignore_file, ignore_patterns) = ignore_patterns(&args.context, &dockerfile)?;
    let options = PlanOptions {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        target_platform: args
            .platform
            .as_deref()
            .map(Platform::parse)
            .transpose()
            .context("invalid --platform")?,
        build_platform: None,
        base_images: None,
        contexts: BTreeMap::new(),
    };
    let plan = plan::plan(&df, &options)?;
    for warning in &plan.warnings {
        print_warning(&name, warning);
    }
    if !plan.unused_build_args.is_empty() {
        eprintln!(
            "warning: build-args not consumed by any ARG: {}",
            plan.unused_build_args.join(", ")
        );
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let output = JsonOutput {
            dockerfile: name,
            context: args.context.display().to_string(),
            ignore_file: ignore_file.map(|p| p.display().to_string()),
            ignore_patterns,
            directives: &df.directives,
            plan: &plan,
        };
        serde_json::to_writer_pretty(&mut stdout, &output)?;
        writeln!(stdout)?;
    } else {
        let text = render_plan(
            &plan,
            &args.context,
            ignore_file.as_deref(),
            ignore_patterns.len(),
        );
        stdout.write_all(text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The .dockerignore that applies and its patterns.
fn ignore_patterns(
    context: &Path,
    dockerfile: &Path,
) -> anyhow::Result<(Option<PathBuf>, Vec<String>)> {
    let Some(path) = dockerignore::find_ignore_file(context, dockerfile) else {
        return Ok((None, Vec::new()));
    };
    let name = display_path(&path);
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {name}"))?;
    let patterns =
        dockerignore::parse_ignore_file(&text).map_err(|e| ignore_error(&name, &text, &e))?;
    dockerignore::PatternMatcher::new(&patterns).map_err(|e| ignore_error(&name, &text, &e))?;
    Ok((Some(path), patterns))
}

/// An ignore-file error located at its line, rendered like parser errors.
fn ignore_error(name: &str, text: &str, error: &dockerignore::DockerignoreError) -> anyhow::Error {
    let line = error.line().unwrap_or(1);
    let width = kiln_parser::SourceLines::new(text)
        .line(line)
        .chars()
        .count();
    let located = kiln_parser::Error::located(
        name,
        text,
        kiln_parser::Span {
            line,
            column: 1,
            width: width.max(1),
        },
        kiln_parser::ErrorKind::InvalidValue {
            message: error.to_string(),
        },
    )
    .expecting("a .dockerignore pattern such as node_modules, *.log or !keep.log");
    anyhow::Error::new(located)
}

/// A word printed bare when it is plain, JSON-quoted otherwise.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || "-_./:@%+=,~^*?[]{}!#".contains(c));
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

fn stage_label(plan: &Plan, index: usize) -> String {
    plan.stages
        .get(index)
        .map_or_else(|| format!("stage-{index}"), PlannedStage::display_name)
}

fn source_label(plan: &Plan, source: &Source) -> String {
    match source {
        Source::Stage { index } => stage_label(plan, *index),
        Source::Image { reference } => reference.clone(),
        Source::Scratch => "scratch".to_owned(),
        Source::Context { name } => format!("context {name}"),
    }
}

fn pairs(items: &[(String, String)]) -> String {
    items
        .iter()
        .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn copy_line(plan: &Plan, name: &str, copy: &FileCopy) -> String {
    let mut line = name.to_owned();
    if let Some(from) = &copy.from {
        let _ = write!(line, " --from={}", source_label(plan, from));
    }
    if let Some(chown) = &copy.chown {
        let _ = write!(line, " --chown={}", quote(chown));
    }
    if let Some(chmod) = &copy.chmod {
        let _ = write!(line, " --chmod={chmod}");
    }
    if copy.link {
        line.push_str(" --link");
    }
    if copy.parents {
        line.push_str(" --parents");
    }
    for exclude in &copy.excludes {
        let _ = write!(line, " --exclude={}", quote(exclude));
    }
    if let Some(checksum) = &copy.checksum {
        let _ = write!(line, " --checksum={checksum}");
    }
    if copy.keep_git_dir {
        line.push_str(" --keep-git-dir");
    }
    if let Some(unpack) = copy.unpack {
        let _ = write!(line, " --unpack={unpack}");
    }
    for source in &copy.sources {
        let _ = write!(line, " {}", quote(source));
    }
    for inline in &copy.inline {
        let _ = write!(line, " <<{} ({} bytes)", inline.name, inline.content.len());
    }
    let _ = write!(line, " {}", quote(&copy.dest));
    if !copy.dest.starts_with('/') {
        let _ = write!(line, "  (in {})", copy.workdir);
    }
    line
}

/// One step as a Dockerfile-like line with its arguments expanded.
fn step_line(plan: &Plan, step: &Step) -> String {
    match &step.kind {
        StepKind::Run {
            argv,
            script,
            mounts,
            network,
            security,
            ..
        } => {
            let mut line = "RUN".to_owned();
            for mount in mounts {
                let _ = write!(line, " --mount=type={}", mount.mount.kind);
                if let Some(source) = &mount.source {
                    let _ = write!(line, ",from={}", source_label(plan, source));
                }
                if let Some(target) = &mount.mount.target {
                    let _ = write!(line, ",target={}", quote(target));
                }
            }
            if *network != plan::NetworkMode::Default {
                let _ = write!(line, " --network={}", network.as_str());
            }
            if *security != plan::SecurityMode::Sandbox {
                let _ = write!(line, " --security={}", security.as_str());
            }
            let _ = write!(line, " {}", json_list(argv));
            if let Some((name, body)) = script {
                let _ = write!(line, "  (script /dev/pipes/{name}, {} bytes)", body.len());
            }
            line
        }
        StepKind::Cmd { argv } => format!("CMD {}", json_list(argv)),
        StepKind::Entrypoint { argv } => format!("ENTRYPOINT {}", json_list(argv)),
        StepKind::Env { pairs: p } => format!("ENV {}", pairs(p)),
        StepKind::Label { pairs: p } => format!("LABEL {}", pairs(p)),
        StepKind::Arg { args } => {
            let parts: Vec<String> = args
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={}", quote(v)),
                    None => format!("{k} (no value)"),
                })
                .collect();
            format!("ARG {}", parts.join(" "))
        }
        StepKind::Copy(copy) => copy_line(plan, "COPY", copy),
        StepKind::Add(copy) => copy_line(plan, "ADD", copy),
        StepKind::Workdir { path } => format!("WORKDIR {}", quote(path)),
        StepKind::User { user } => format!("USER {}", quote(user)),
        StepKind::Volume { paths } => format!("VOLUME {}", json_list(paths)),
        StepKind::Expose { ports } => format!("EXPOSE {}", ports.join(" ")),
        StepKind::Stopsignal { signal } => format!("STOPSIGNAL {signal}"),
        StepKind::Healthcheck(h) => match h {
            plan::Healthcheck::None => "HEALTHCHECK NONE".to_owned(),
            plan::Healthcheck::Cmd {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                let mut line = "HEALTHCHECK".to_owned();
                for (flag, value) in [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                    ("start-interval", start_interval),
                ] {
                    if *value != 0 {
                        let _ = write!(
                            line,
                            " --{flag}={}",
                            kiln_parser::values::format_duration(*value)
                        );
                    }
                }
                if *retries != 0 {
                    let _ = write!(line, " --retries={retries}");
                }
                let _ = write!(line, " {}", json_list(test));
                line
            }
        },
        StepKind::Shell { shell } => format!("SHELL {}", json_list(shell)),
        StepKind::Maintainer { name } => format!("MAINTAINER {}", quote(name)),
        StepKind::Onbuild { expression } => format!("ONBUILD {expression}"),
    }
}

/// The human-readable plan.
pub fn render_plan(
    plan: &Plan,
    context: &Path,
    ignore_file: Option<&Path>,
    patterns: usize,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "Dockerfile: {}\nContext: {}",
        plan.file,
        context.display()
    );
    match ignore_file {
        Some(file) => {
            let plural = if patterns == 1 { "" } else { "s" };
            let _ = writeln!(
                out,
                " (ignore file {}, {patterns} pattern{plural})",
                file.display()
            );
        }
        None => out.push('\n'),
    }
    let _ = writeln!(
        out,
        "Target: {} ({} of {} stage{} needed)",
        stage_label(plan, plan.target),
        plan.build_order.len(),
        plan.stages.len(),
        if plan.stages.len() == 1 { "" } else { "s" }
    );
    let order: Vec<String> = plan
        .build_order
        .iter()
        .map(|i| stage_label(plan, *i))
        .collect();
    let _ = writeln!(out, "Build order: {}", order.join(", "));
    let declared: Vec<(String, String)> = plan
        .global_args
        .iter()
        .filter(|(k, _)| !plan::is_predefined_arg(k))
        .cloned()
        .collect();
    if !declared.is_empty() {
        let _ = writeln!(out, "Global ARGs: {}", pairs(&declared));
    }
    if !plan.external_images.is_empty() {
        let _ = writeln!(out, "Images: {}", plan.external_images.join(", "));
    }
    for stage in &plan.stages {
        out.push('\n');
        let base = match &stage.base {
            Base::Scratch => "scratch".to_owned(),
            Base::Stage { index } => format!("stage {}", stage_label(plan, *index)),
            Base::Image { reference } => reference.clone(),
            Base::Context { name } => format!("context {name}"),
        };
        let _ = write!(
            out,
            "Stage {} {}: {} => {base}",
            stage.index,
            stage.display_name(),
            stage.from_code
        );
        if let Some(platform) = &stage.platform {
            let _ = write!(out, " [{platform}]");
        }
        if stage.needed {
            out.push('\n');
        } else {
            let _ = writeln!(out, " (not needed for {})", stage_label(plan, plan.target));
            continue;
        }
        for dep in &stage.dependencies {
            let _ = writeln!(
                out,
                "  needs {} ({}, line {}{})",
                source_label(plan, &dep.source),
                match dep.kind {
                    plan::DependencyKind::Base => "FROM",
                    plan::DependencyKind::CopyFrom => "COPY --from",
                    plan::DependencyKind::MountFrom => "RUN --mount from",
                },
                dep.span.line,
                if dep.onbuild { ", ONBUILD trigger" } else { "" }
            );
        }
        for step in &stage.steps {
            let marker = if step.onbuild { "ONBUILD> " } else { "" };
            let _ = writeln!(
                out,
                "  {:>4}  {marker}{}",
                step.span.line,
                step_line(plan, step)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args() {
        let args = parse_build_args(&["A=1".into(), "B=".into(), "C=x=y".into()]).unwrap();
        assert_eq!(args.get("A").map(String::as_str), Some("1"));
        assert_eq!(args.get("B").map(String::as_str), Some(""));
        assert_eq!(args.get("C").map(String::as_str), Some("x=y"));
        assert!(parse_build_args(&["=1".into()]).is_err());
        assert!(
            parse_build_args(&["KILN_SURELY_UNSET_VARIABLE".into()])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/usr/bin"), "/usr/bin");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("x\ny"), "\"x\\ny\"");
    }
}
