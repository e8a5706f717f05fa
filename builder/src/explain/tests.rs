use std::time::SystemTime;

use serde_json::json;

use super::*;

fn identity(position: usize, instruction: &str) -> StepIdentity {
    StepIdentity {
        stage: "0".to_owned(),
        position,
        instruction: instruction.to_owned(),
    }
}

fn history(records: &[(StepIdentity, Value)]) -> History {
    History::new(
        records
            .iter()
            .map(|(step, inputs)| CacheEntry {
                record: CacheRecord {
                    version: crate::cache::RECORD_VERSION,
                    key: "sha256:00".to_owned(),
                    description: step.instruction.clone(),
                    layer: None,
                    created: String::new(),
                    sources_digest: None,
                    inputs: Some(inputs.clone()),
                    step: Some(step.clone()),
                },
                last_used: SystemTime::UNIX_EPOCH,
                size: 0,
                shared: false,
            })
            .collect(),
    )
}

fn facts<'a>(step: &'a StepIdentity, args: &'a [String]) -> Facts<'a> {
    Facts {
        step,
        cache_off: None,
        previous_ran: false,
        first: step.position == 2,
        base: BaseKind::Image,
        args,
    }
}

fn run(parent: &str, env: &[(&str, &str)]) -> Value {
    json!({"op": "run", "parent": parent, "argv": ["make"], "env": env})
}

#[test]
fn reasons_name_what_changed() {
    let make = identity(3, "RUN make");
    let args = vec!["VERSION".to_owned()];
    let h = history(&[(make.clone(), run("p", &[("VERSION", "1.2"), ("A", "x")]))]);
    let f = facts(&make, &args);
    let why = |now: Value| reason(&h, &f, &now, None);
    assert_eq!(
        why(run("p", &[("VERSION", "1.3"), ("A", "x")])),
        "build arg VERSION changed (1.2 -> 1.3)"
    );
    assert_eq!(
        why(run("p", &[("VERSION", "1.2")])),
        "env A changed (x -> unset)"
    );
    // Every input that changed (in the order of the environment), the
    // step's own before its parent's.
    assert_eq!(
        why(run("p", &[("A", "y"), ("VERSION", "1.3")])),
        "env A changed (x -> y), build arg VERSION changed (1.2 -> 1.3)"
    );
    assert_eq!(
        why(run("q", &[("VERSION", "1.2"), ("A", "x")])),
        "a previous step changed"
    );
    assert_eq!(
        why(run("q", &[("VERSION", "1.3"), ("A", "x")])),
        "build arg VERSION changed (1.2 -> 1.3); a previous step changed"
    );
    let ran = Facts {
        previous_ran: true,
        ..facts(&make, &args)
    };
    assert_eq!(
        reason(&h, &ran, &run("q", &[("VERSION", "1.2"), ("A", "x")]), None),
        "a previous step ran"
    );
    assert_eq!(
        reason(
            &h,
            &ran,
            &json!({"op": "run", "parent": "q", "argv": ["make", "all"], "env": [["VERSION", "1.2"], ["A", "x"]], "user": "app"}),
            None
        ),
        "command changed; user changed (none -> app); a previous step ran"
    );
    let off = Facts {
        cache_off: Some("--no-cache"),
        ..facts(&make, &args)
    };
    assert_eq!(reason(&h, &off, &run("p", &[]), None), "--no-cache");
    let other = identity(3, "RUN make all");
    assert_eq!(
        reason(&h, &facts(&other, &args), &run("p", &[]), None),
        "instruction text changed"
    );
    let new = identity(4, "RUN test");
    assert_eq!(
        reason(&h, &facts(&new, &args), &run("p", &[]), None),
        "no earlier build of this step"
    );
}

#[test]
fn the_first_step_names_the_base_image_that_changed() {
    let step = identity(2, "RUN make");
    let old = format!("sha256:{}", "ab".repeat(32));
    let new = format!("sha256:{}", "cd".repeat(32));
    let h = history(&[(step.clone(), run(&old, &[]))]);
    assert_eq!(
        reason(&h, &facts(&step, &[]), &run(&new, &[]), None),
        "base image changed (sha256:abababababab.. -> sha256:cdcdcdcdcdcd..)"
    );
    assert_eq!(
        h.base_changed("0", &new).as_deref(),
        Some("base image changed (sha256:abababababab.. -> sha256:cdcdcdcdcdcd..)")
    );
    assert_eq!(h.base_changed("0", &old), None);
}

fn file(path: &str, content: &str, meta: &str) -> SourceFile {
    SourceFile {
        path: path.to_owned(),
        content: content.to_owned(),
        meta: meta.to_owned(),
    }
}

#[test]
fn copies_name_the_files_that_changed_up_to_ten() {
    let step = identity(2, "COPY . /src");
    let copy = |digest: &str| json!({"op": "copy", "parent": "p", "sources_digest": digest});
    let h = history(&[(step.clone(), copy("sha256:1"))]);
    let before = vec![
        file("README.md", "1", "f"),
        file("old.txt", "1", "f"),
        file("src/main.rs", "1", "f"),
        file("x", "1", "f:644"),
    ];
    let now = vec![
        file("README.md", "1", "f"),
        file("new.txt", "1", "f"),
        file("src/main.rs", "2", "f"),
        file("x", "1", "f:755"),
    ];
    assert_eq!(
        reason(
            &h,
            &facts(&step, &[]),
            &copy("sha256:2"),
            Some((&now, Some(&before)))
        ),
        "4 files changed: new.txt (added), old.txt (removed), src/main.rs (content), x (metadata)"
    );
    assert_eq!(
        reason(
            &h,
            &facts(&step, &[]),
            &copy("sha256:2"),
            Some((&now, None))
        ),
        "source files changed"
    );
    let many: Vec<SourceFile> = (0..13)
        .map(|i| file(&format!("f{i:02}"), "1", "f"))
        .collect();
    assert_eq!(
        reason(
            &h,
            &facts(&step, &[]),
            &copy("sha256:2"),
            Some((&many, Some(&[])))
        ),
        "13 files changed: f00 (added), f01 (added), f02 (added), f03 (added), f04 (added), \
         f05 (added), f06 (added), f07 (added), f08 (added), f09 (added), and 3 more"
    );
}
