//! The crate's imports go one way: no cycle among `src/` modules, and the decision layer's
//! types (`decide::snapshot`) import no decision. Read from the `crate::` and `super::` paths of
//! every file under `src/` (test modules excluded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/a.rs` is `a`, `src/a/mod.rs` is `a`, `src/a/b.rs` is `a::b`.
fn module_of(path: &Path, root: &Path) -> String {
    let relative = path.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The words that follow `prefix` in `text`: `crate::decide::pair::x` gives `["decide", "pair",
/// "x"]` for prefix `crate::`.
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    text.match_indices(prefix)
        .filter(|(index, _)| {
            // Not part of a longer identifier (`my_crate::`).
            text[..*index]
                .chars()
                .last()
                .is_none_or(|before| !before.is_alphanumeric() && before != '_')
        })
        .map(|(index, _)| {
            text[index + prefix.len()..]
                .split("::")
                .map(|part| {
                    part.split(|c: char| !c.is_alphanumeric() && c != '_')
                        .next()
                        .unwrap_or("")
                })
                .take_while(|part| !part.is_empty())
                .collect()
        })
        .collect()
}

/// The module graph: every module and the modules it refers to.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let modules: BTreeSet<String> = paths.iter().map(|path| module_of(path, &root)).collect();
    let mut graph = BTreeMap::new();
    for path in &paths {
        let module = module_of(path, &root);
        if module == "main" || module.ends_with("tests") || module.contains("tests::") {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("readable");
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            // Doc links and comments name modules without importing them.
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = code.as_str();
        let parent: Vec<&str> = if path.ends_with("mod.rs") {
            module.split("::").collect()
        } else {
            module.split("::").collect::<Vec<_>>()[..module.split("::").count() - 1].to_vec()
        };
        let mut targets = BTreeSet::new();
        let mut add = |words: Vec<&str>| {
            // The longest prefix of the path that names a module.
            for length in (1..=words.len()).rev() {
                let candidate = words[..length].join("::");
                if modules.contains(&candidate) {
                    if candidate != module {
                        targets.insert(candidate);
                    }
                    return;
                }
            }
        };
        for words in paths_after(text, "crate::") {
            add(words);
        }
        for words in paths_after(text, "super::") {
            let mut full = parent.clone();
            full.extend(words);
            add(full);
        }
        graph.insert(module, targets);
    }
    graph
}

fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    stack: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(position) = stack.iter().position(|entry| entry == node) {
        let mut cycle = stack[position..].to_vec();
        cycle.push(node.to_string());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    stack.push(node.to_string());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = cycle_from(graph, next, stack, done) {
            return Some(cycle);
        }
    }
    stack.pop();
    done.insert(node.to_string());
    None
}

#[test]
fn no_import_cycle_among_src_modules() {
    let graph = graph();
    assert!(
        graph.contains_key("decide::rotation")
            && graph["decide::rotation"].contains("decide::verification"),
        "the graph is read correctly: {graph:?}"
    );
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, node, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn decision_types_import_no_decision() {
    let graph = graph();
    let decisions: Vec<&String> = graph["decide::snapshot"]
        .iter()
        .filter(|target| target.starts_with("decide"))
        .collect();
    assert!(
        decisions.is_empty(),
        "decide::snapshot imports {decisions:?}"
    );
}

/// The modules a layer may import besides its own.
fn imports_outside(
    graph: &BTreeMap<String, BTreeSet<String>>,
    layer: &str,
    allowed: &[&str],
) -> Vec<String> {
    let within =
        |module: &str, root: &str| module == root || module.starts_with(&format!("{root}::"));
    graph
        .iter()
        .filter(|(module, _)| within(module, layer))
        .flat_map(|(module, targets)| {
            targets
                .iter()
                .filter(|target| {
                    !within(target, layer) && !allowed.iter().any(|root| within(target, root))
                })
                .map(move |target| format!("{module} -> {target}"))
        })
        .collect()
}

/// The decisions are pure: they read the model, the API types, the condition helpers and token
/// values, and no module that holds a client, a watch or a cache.
#[test]
fn the_decisions_import_no_io_module() {
    let graph = graph();
    assert!(graph.contains_key("decide::holders"), "{graph:?}");
    let outside = imports_outside(&graph, "decide", &["api", "model", "conditions", "token"]);
    assert!(
        outside.is_empty(),
        "decide imports I/O modules: {outside:?}"
    );
}

/// The model (observations, patches, reasons) imports nothing but the API types.
#[test]
fn the_model_imports_only_the_api() {
    let graph = graph();
    assert!(graph.contains_key("model::consumer"), "{graph:?}");
    let outside = imports_outside(&graph, "model", &["api"]);
    assert!(outside.is_empty(), "model imports {outside:?}");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    let cycle = cycle_from(&graph, "a", &mut Vec::new(), &mut BTreeSet::new());
    assert_eq!(cycle, Some(vec!["a".into(), "b".into(), "a".into()]));
}

/// The code of a source file without its test module and comment lines.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable");
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        // A printer column's heading is not a reason.
        .filter(|line| {
            !line.trim_start().starts_with("printcolumn(name =")
                && !line.trim_start().starts_with("name = \"")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every string literal of `code` that is one PascalCase word (`"ConsumerBlocked"`, `"Idle"`).
fn pascal_case_literals(code: &str) -> Vec<String> {
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            (2..=48).contains(&word.len())
                && word.starts_with(|c: char| c.is_ascii_uppercase())
                && word.chars().all(|c| c.is_ascii_alphanumeric())
                && word.chars().any(|c| c.is_ascii_lowercase())
        })
        .map(str::to_string)
        .collect()
}

/// Words other projects define that the code names as they are: Kubernetes kinds, condition
/// statuses and types (a CRD's `Established`), API status reasons, update strategies, HTTP
/// header names, Argo Rollouts' pause reason.
const FOREIGN_WORDS: &[&str] = &[
    "True",
    "False",
    "Unknown",
    "Secret",
    "Pod",
    "Namespace",
    "ReplicaSet",
    "PodTemplate",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Rollout",
    "StreamingToken",
    "ClusterStreamingToken",
    "StreamingTokenStatus",
    "Opaque",
    "Progressing",
    "OnDelete",
    "Succeeded",
    "Failed",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "Timeout",
    "ServerTimeout",
    "TooManyRequests",
    "Unauthorized",
    "Forbidden",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "UnsupportedMediaType",
    "RequestEntityTooLarge",
    "InternalError",
    "ServiceUnavailable",
    "Expired",
    "Failure",
    "Authorization",
    "Accept",
    "ZeroDowntime",
    "Restart",
    "CanaryPauseStep",
    "Established",
];

/// The vocabulary's words: every `&str` constant of `model/reason.rs` and the words its enums
/// are written as.
fn vocabulary() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    pascal_case_literals(&code_of(&root.join("model/reason.rs")))
        .into_iter()
        .collect()
}

/// Reasons, phases and states are named through `model::reason`, never spelled out: a typo
/// would otherwise drop an Event, a metric or a kstatus verdict silently.
#[test]
fn no_reason_is_spelled_outside_the_vocabulary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let vocabulary = vocabulary();
    assert!(
        vocabulary.contains("ConsumerBlocked") && vocabulary.contains("Synced"),
        "the vocabulary is read: {vocabulary:?}"
    );
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let mut spelled = Vec::new();
    for path in paths {
        if path.ends_with("model/reason.rs")
            || path.ends_with("tests.rs")
            || path.components().any(|part| part.as_os_str() == "tests")
        {
            continue;
        }
        for word in pascal_case_literals(&code_of(&path)) {
            let foreign = FOREIGN_WORDS.contains(&word.as_str())
                || word.chars().all(|c| !c.is_ascii_lowercase());
            if !foreign || vocabulary.contains(&word) && word != "Unknown" {
                spelled.push(format!(
                    "{}: \"{word}\"",
                    path.strip_prefix(&root).unwrap_or(&path).display()
                ));
            }
        }
    }
    assert!(
        spelled.is_empty(),
        "{} reason literal(s) outside src/model/reason.rs (name the constant, or add the word \
         there): {spelled:#?}",
        spelled.len()
    );
}

/// The README's table of the vocabulary, made from `src/model/reason.rs`: a heading per group
/// (its `//` line, or its module's or enum's doc), a row per word with its doc.
fn vocabulary_table() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let text = std::fs::read_to_string(root.join("model/reason.rs")).expect("readable");
    let mut out = String::new();
    let mut doc: Vec<String> = Vec::new();
    let mut in_enum = false;
    let heading = |out: &mut String, title: &str| {
        out.push_str(&format!("\n**{title}**\n\n| word | meaning |\n|---|---|\n"));
    };
    for line in text.lines().skip_while(|line| line.starts_with("//!")) {
        let trimmed = line.trim();
        if let Some(title) = trimmed.strip_prefix("// ") {
            heading(&mut out, title);
        } else if let Some(words) = trimmed.strip_prefix("///") {
            doc.push(words.trim().to_string());
        } else if trimmed.starts_with("pub mod ") || trimmed.starts_with("pub enum ") {
            heading(&mut out, &doc.join(" "));
            in_enum = trimmed.starts_with("pub enum ");
        } else if let Some(rest) = trimmed.strip_prefix("pub const ") {
            if let Some(word) = rest.split('"').nth(1) {
                out.push_str(&format!("| `{word}` | {} |\n", doc.join(" ")));
            }
        } else if in_enum && trimmed.ends_with(',') && !trimmed.contains(' ') {
            out.push_str(&format!(
                "| `{}` | {} |\n",
                trimmed.trim_end_matches(','),
                doc.join(" ")
            ));
        } else if trimmed.starts_with("impl ") {
            break;
        }
        if !trimmed.starts_with("///") {
            doc.clear();
        }
    }
    out
}

/// The README lists the vocabulary as the code has it (between its `reasons` markers).
/// `STO_BLESS=1 cargo test --test layout` writes the table.
#[test]
fn the_readme_lists_the_vocabulary() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (begin, end) = ("<!-- reasons:begin -->\n", "<!-- reasons:end -->");
    let start = readme
        .find(begin)
        .expect("README has the reasons:begin marker")
        + begin.len();
    let stop = readme.find(end).expect("README has the reasons:end marker");
    let table = vocabulary_table();
    assert!(table.contains("| `ConsumerBlocked` |"), "{table}");
    assert!(table.contains("| `Synced` |"), "{table}");
    if readme[start..stop] != table {
        if std::env::var("STO_BLESS").is_ok() {
            let written = format!("{}{table}{}", &readme[..start], &readme[stop..]);
            std::fs::write(&path, written).expect("README written");
        } else {
            panic!(
                "README's vocabulary table is stale: run STO_BLESS=1 cargo test --test layout; expected:\n{table}"
            );
        }
    }
}

/// The functions of `code` (a file without its tests) longer than `limit` lines, from the `fn`
/// line to its closing brace: `(name, first line, lines)`.
fn long_functions(code: &str, limit: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim_start();
        let declaration = [
            "pub fn ",
            "fn ",
            "async fn ",
            "pub async fn ",
            "pub(super) fn ",
            "pub(super) async fn ",
            "pub(crate) fn ",
            "pub(crate) async fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .find_map(|prefix| line.strip_prefix(prefix));
        let Some(rest) = declaration.filter(|_| !line.trim_end().ends_with(';')) else {
            index += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut started, mut end) = (0i32, false, index);
        'scan: for (offset, text) in lines[index..].iter().enumerate() {
            // Braces in strings, characters and comments do not count.
            let mut in_string = false;
            let mut previous = ' ';
            let code_part = text.split("//").next().unwrap_or_default();
            for character in code_part.chars() {
                match character {
                    '"' if previous != '\\' => in_string = !in_string,
                    '{' if !in_string && previous != '\'' => {
                        depth += 1;
                        started = true;
                    }
                    '}' if !in_string && previous != '\'' => depth -= 1,
                    _ => {}
                }
                previous = character;
            }
            if started && depth == 0 {
                end = index + offset;
                break 'scan;
            }
        }
        let length = end - index + 1;
        if length > limit {
            found.push((name, index + 1, length));
        }
        index += 1;
    }
    found
}

/// No function outside tests is longer than 80 lines: a long one is split into named steps.
#[test]
fn no_function_is_longer_than_80_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sample = "fn short() {\n    let x = \"}\";\n}\nfn long() {\n".to_string()
        + &"    step();\n".repeat(90)
        + "}\n";
    assert_eq!(
        long_functions(&sample, 80),
        [("long".to_string(), 4, 92)],
        "the measure is read correctly"
    );
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let mut long = Vec::new();
    for path in paths {
        if path.components().any(|part| part.as_os_str() == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (name, line, length) in long_functions(code, 80) {
            long.push(format!(
                "{}:{line} {name}: {length} lines",
                path.strip_prefix(&root).unwrap_or(&path).display()
            ));
        }
    }
    assert!(long.is_empty(), "functions over 80 lines: {long:#?}");
}
