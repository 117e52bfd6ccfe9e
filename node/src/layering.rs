//! The architecture written down, checked: the layer list in `lib.rs`'s
//! docs against the `crate::` paths the code uses, and no module of the
//! workspace's crates in a cycle with another.
//!
//! The check reads the source files. A module may use its own layer and
//! those listed before it; a path into a later layer is an upward edge and
//! fails the test, naming the file. Test code (`#[cfg(test)]` modules and
//! items) is not checked: tests may reach anywhere.
//!
//! Cycles are looked for between files: a file's edges are the modules its
//! `crate::`, `super::`, `self::` and child-module paths name (an edge to a
//! module's own ancestor does not count: a child using what its parent
//! exports is how Rust modules are built).
//!
//! CAVEATS: paths are found by text, not by the compiler: a path written in
//! a macro's tokens counts, one made by a macro does not; a glob import
//! (`use crate::x::*`) counts as an edge to `x`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from its crate's root (`["storage", "rocks"]`).
type ModPath = Vec<String>;

/// The source files of one crate root: module path → (file, text with
/// comments, strings and test code removed).
struct Crate {
    modules: BTreeMap<ModPath, (PathBuf, String)>,
}

/// A comment, string or char literal at the start of `rest`: its length
/// and what stands in for it in the code read (nothing for a comment, an
/// empty literal for the others); `None` when `rest` starts with code.
fn skipped(rest: &str) -> Option<(usize, &'static str)> {
    if rest.starts_with("//") {
        Some((rest.find('\n').unwrap_or(rest.len()), ""))
    } else if rest.starts_with("/*") {
        Some((rest.find("*/").map_or(rest.len(), |end| end + 2), ""))
    } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
        let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
        let close = format!("\"{}", "#".repeat(hashes));
        let body = 2 + hashes;
        let len = rest[body..]
            .find(&close)
            .map_or(rest.len(), |end| body + end + close.len());
        Some((len, "\"\""))
    } else if rest.starts_with('"') {
        let mut j = 1;
        while j < rest.len() {
            match rest.as_bytes()[j] {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        Some(((j + 1).min(rest.len()), "\"\""))
    } else {
        char_literal(rest).map(|len| (len, "' '"))
    }
}

/// `text` without comments, string and char literals, and without the
/// items under `#[cfg(test)]` (the attribute's item up to its closing
/// brace or semicolon).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some((len, stand_in)) = skipped(rest) {
            i += len;
            out.push_str(stand_in);
        } else if rest.starts_with("#[cfg(test)]") {
            i += "#[cfg(test)]".len() + test_item_len(&text[i + "#[cfg(test)]".len()..]);
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a char literal at the start of `rest` ('a', '\n',
/// '\''), `None` for a lifetime ('a).
fn char_literal(rest: &str) -> Option<usize> {
    let mut chars = rest.char_indices();
    if chars.next()?.1 != '\'' {
        return None;
    }
    let (_, c) = chars.next()?;
    if c == '\\' {
        let end = rest.get(3..)?.find('\'')?;
        return Some(3 + end + 1);
    }
    let (at, close) = chars.next()?;
    (close == '\'').then_some(at + 1)
}

/// The length of the item that follows a `#[cfg(test)]`: up to the `;`
/// or the brace that closes its body, whichever comes first at depth 0
/// (comments and literals skipped).
fn test_item_len(rest: &str) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < rest.len() {
        if let Some((len, _)) = skipped(&rest[i..]) {
            i += len;
            continue;
        }
        let c = rest[i..].chars().next().unwrap_or(' ');
        match c {
            '{' | '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            ';' if depth == 0 => return i + 1,
            _ => {}
        }
        i += c.len_utf8();
    }
    rest.len()
}

impl Crate {
    /// The crate whose root file is `root` (lib.rs or main.rs), following
    /// its `mod` declarations; modules declared under `#[cfg(test)]` are
    /// left out with the rest of the test code.
    fn read(root: &Path) -> Crate {
        let mut modules = BTreeMap::new();
        let dir = root.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::visit(&mut modules, Vec::new(), root.to_path_buf(), dir);
        Crate { modules }
    }

    fn visit(
        modules: &mut BTreeMap<ModPath, (PathBuf, String)>,
        path: ModPath,
        file: PathBuf,
        dir: PathBuf,
    ) {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        let code = code_of(&text);
        for child in declared_modules(&code) {
            let flat = dir.join(format!("{child}.rs"));
            let (child_file, child_dir) = if flat.exists() {
                (flat, dir.join(&child))
            } else {
                (dir.join(&child).join("mod.rs"), dir.join(&child))
            };
            let mut child_path = path.clone();
            child_path.push(child);
            Self::visit(modules, child_path, child_file, child_dir);
        }
        modules.insert(path, (file, code));
    }

    /// The longest module path that `path` starts with.
    fn resolve(&self, path: &[String]) -> Option<ModPath> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|candidate| self.modules.contains_key(candidate))
    }

    /// Each module's edges: the modules its paths name, the module itself
    /// and its ancestors left out.
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges = BTreeMap::new();
        for (me, (_, code)) in &self.modules {
            let mut to = BTreeSet::new();
            for path in paths_in(code, me, &self.children(me)) {
                if let Some(target) = self.resolve(&path)
                    && !me.starts_with(&target)
                {
                    to.insert(target);
                }
            }
            edges.insert(me.clone(), to);
        }
        edges
    }

    fn children(&self, me: &ModPath) -> BTreeSet<String> {
        self.modules
            .keys()
            .filter(|path| path.len() == me.len() + 1 && path.starts_with(me))
            .filter_map(|path| path.last().cloned())
            .collect()
    }
}

/// The modules `code` declares with `mod name;` (not inline `mod name {`).
fn declared_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("mod ").map(|n| from + n) {
        from = at + 4;
        if at > 0 && is_ident(code.as_bytes()[at - 1] as char) {
            continue;
        }
        let rest = code[from..].trim_start();
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if len > 0 && rest[len..].trim_start().starts_with(';') {
            found.push(rest[..len].to_owned());
        }
    }
    found
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths `code` (of module `me`, whose child modules are
/// `children`) names: `crate::a::b`, `super::c`, `self::d`, `child::e`, a
/// `{…}` group expanded into one path per member.
fn paths_in(code: &str, me: &ModPath, children: &BTreeSet<String>) -> Vec<ModPath> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1] as char) && bytes[i - 1] != b':';
        if !starts_word || !is_ident(bytes[i] as char) {
            i += 1;
            continue;
        }
        let word_end = code[i..]
            .find(|c: char| !is_ident(c))
            .map_or(code.len(), |n| i + n);
        let word = &code[i..word_end];
        let base: Option<ModPath> = match word {
            "crate" => Some(Vec::new()),
            "super" => Some(me[..me.len().saturating_sub(1)].to_vec()),
            "self" => Some(me.clone()),
            child if children.contains(child) => Some(me.clone()),
            _ => None,
        };
        match base {
            Some(mut base) if code[word_end..].starts_with("::") => {
                if !matches!(word, "crate" | "super" | "self") {
                    base.push(word.to_owned());
                }
                let (paths, end) = path_tail(code, word_end + 2, base);
                out.extend(paths);
                i = end;
            }
            _ => i = word_end,
        }
    }
    out
}

/// The paths from `at` (just after a `::`) onwards, starting at `base`.
fn path_tail(code: &str, mut at: usize, mut base: ModPath) -> (Vec<ModPath>, usize) {
    loop {
        let rest = &code[at..];
        let skipped = rest.len() - rest.trim_start().len();
        at += skipped;
        let rest = &code[at..];
        if rest.starts_with('{') {
            let mut depth = 0;
            let mut end = rest.len();
            for (n, c) in rest.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = n;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let inner = &rest[1..end];
            let mut paths = Vec::new();
            for member in split_top_level(inner) {
                let member = member.trim();
                if member.is_empty() || member == "self" || member == "*" {
                    paths.push(base.clone());
                    continue;
                }
                let (more, _) = path_tail(member, 0, base.clone());
                paths.extend(more);
            }
            return (paths, at + end + 1);
        }
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if len == 0 {
            return (vec![base], at);
        }
        let segment = &rest[..len];
        if segment == "super" {
            base.pop();
        } else if segment != "self" {
            base.push(segment.to_owned());
        }
        at += len;
        if !code[at..].starts_with("::") {
            return (vec![base], at);
        }
        at += 2;
    }
}

/// `text` split at the commas not inside braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (n, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..n]);
                start = n + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The layers `lib.rs`'s docs list under "Layers, bottom-up:", each the
/// modules of one bullet, bottom first.
fn layers(lib: &str) -> Vec<Vec<String>> {
    let mut layers = Vec::new();
    let mut listing = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with("Layers, bottom-up") {
            listing = true;
            continue;
        }
        if !listing {
            continue;
        }
        if doc.is_empty() {
            break;
        }
        let Some(bullet) = doc.strip_prefix("- ") else {
            continue;
        };
        // The modules are the code spans before the colon.
        let head = bullet.split(':').next().unwrap_or("");
        let names: Vec<String> = head
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        layers.push(names);
    }
    layers
}

/// The modules that form a cycle, each cycle as its modules joined.
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<String> {
    // Tarjan's strongly connected components, iteratively small enough to
    // recurse: module graphs are a few hundred nodes.
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<String>,
    }
    fn visit<'a>(state: &mut State<'a>, v: &'a ModPath) {
        let n = state.index.len();
        state.index.insert(v, n);
        state.low.insert(v, n);
        state.stack.push(v);
        state.on_stack.insert(v);
        let targets = state.edges.get(v).into_iter().flatten();
        for w in targets {
            if !state.index.contains_key(w) {
                visit(state, w);
                let low = state.low[w].min(state.low[v]);
                state.low.insert(v, low);
            } else if state.on_stack.contains(w) {
                let low = state.index[w].min(state.low[v]);
                state.low.insert(v, low);
            }
        }
        if state.low[v] == state.index[v] {
            let mut component = Vec::new();
            while let Some(w) = state.stack.pop() {
                state.on_stack.remove(w);
                component.push(w.join("::"));
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component.join(" <-> "));
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layer violations of the crate at `root` against `layers`: "file
/// uses later_module" per upward edge, and the crate's modules missing from
/// the list.
fn violations(krate: &Crate, layers: &[Vec<String>]) -> Vec<String> {
    let rank: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(n, names)| names.iter().map(move |name| (name.as_str(), n)))
        .collect();
    let mut found = Vec::new();
    for (path, _) in krate.modules.iter().filter(|(path, _)| path.len() == 1) {
        if !rank.contains_key(path[0].as_str()) {
            found.push(format!("module {} is not in the layer list", path[0]));
        }
    }
    for (from, targets) in krate.edges() {
        let Some(from_top) = from.first() else {
            continue;
        };
        for to_top in targets.iter().filter_map(|to| to.first()) {
            match (rank.get(from_top.as_str()), rank.get(to_top.as_str())) {
                (Some(a), Some(b)) if b > a => found.push(format!(
                    "{} uses {to_top}, a layer above {from_top}",
                    krate.modules[&from].0.display()
                )),
                _ => {}
            }
        }
    }
    found
}

#[test]
fn every_use_of_the_node_crate_goes_down_the_layer_list() {
    let root = manifest_dir().join("src/lib.rs");
    let lib = std::fs::read_to_string(&root).expect("read lib.rs");
    let layers = layers(&lib);
    assert!(
        layers.len() > 10,
        "the layer list was not found: {layers:?}"
    );
    let krate = Crate::read(&root);
    let found = violations(&krate, &layers);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn no_module_of_the_workspace_is_in_a_cycle() {
    let workspace = manifest_dir().join("..");
    let roots = [
        "node/src/lib.rs",
        "node/src/main.rs",
        "client/src/lib.rs",
        "client/src/bin/ringkv/main.rs",
        "client/src/bin/ringkv-bench/main.rs",
    ];
    let mut found = Vec::new();
    for root in roots {
        let krate = Crate::read(&workspace.join(root));
        assert!(!krate.modules.is_empty(), "{root}");
        found.extend(
            cycles(&krate.edges())
                .into_iter()
                .map(|cycle| format!("{root}: {cycle}")),
        );
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checks themselves find what they are for: a planted upward edge, a
/// planted cycle, and paths in groups, comments and tests told apart.
#[test]
fn the_checks_catch_an_upward_edge_and_a_cycle() {
    let me: ModPath = vec!["a".into(), "b".into()];
    let children: BTreeSet<String> = ["kid".to_owned()].into();
    let code = code_of(
        "use crate::x::{y::Z, w, v::{self, u}};\n\
         // use crate::commented;\n\
         let s = \"crate::in_a_string\";\n\
         use super::c; use self::d; kid::run(); not::this();\n\
         #[cfg(test)]\nmod tests { use crate::only_tests; }\n\
         #[cfg(test)]\nuse crate::test_import;\n\
         fn f<'a>(x: &'a str) -> char { 'x' } use crate::after;",
    );
    let found: BTreeSet<String> = paths_in(&code, &me, &children)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let expected: BTreeSet<String> = [
        "x::y::Z",
        "x::w",
        "x::v",
        "x::v::u",
        "a::c",
        "a::b::d",
        "a::b::kid::run",
        "after",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(found, expected);

    let module = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<ModPath>();
    let mut modules = BTreeMap::new();
    for (path, code) in [
        (vec![], ""),
        (vec!["low"], "use crate::high::Thing;"),
        (vec!["high"], "use crate::low::Other;"),
        (vec!["alone"], "use crate::low::Other;"),
    ] {
        modules.insert(module(&path), (PathBuf::from(path.join("/")), code.into()));
    }
    let krate = Crate { modules };
    let layers = vec![
        vec!["low".to_owned(), "alone".to_owned()],
        vec!["high".to_owned()],
    ];
    assert_eq!(
        violations(&krate, &layers),
        vec!["low uses high, a layer above low".to_owned()]
    );
    assert_eq!(cycles(&krate.edges()), vec!["high <-> low".to_owned()]);
}

#[test]
fn the_layer_list_is_read_from_the_docs() {
    let lib = "//! Intro.\n//!\n//! Layers, bottom-up:\n//! - [`a`], [`b`]: the base;\n\
               //!   more words with `code`: here;\n//! - `c` (tests only): top.\n//!\n//! After.\n";
    assert_eq!(
        layers(lib),
        vec![vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]]
    );
}
