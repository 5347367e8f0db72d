//! Every command block of README.md and docs/*.md that starts the relay, run as written
//! against the built binary: each node it starts must print its listening lines and serve
//! (`GET /healthz` on its admin listener, an engine.io handshake on its Socket.IO port, a
//! joined cluster for cluster nodes, the recipe's own token admitted where it mints one).
//! The blocks are read from the files at test time, so a recipe cannot drift from what runs.
//!
//! Which blocks, and how each line is treated:
//! - A *recipe* is a fenced ```` ```sh ````, ```` ```bash ```` or ```` ```console ```` block
//!   (in `console` blocks only the `$ ` lines are commands, the rest is output) with at least
//!   one command that starts the relay: `cargo run --release` without `-p`/`--bin`/
//!   `--example` (nothing, or relay flags, after `--`), `target/release/p2p-relay`, or
//!   `p2p-relay`, possibly after `VAR=value` assignments, possibly inside a `for`/`while`
//!   loop. `p2p-relay token` and `p2p-relay config` do not start it: a block with only those
//!   is not a recipe. A block is left out only with the marker line `<!-- recipe: not run
//!   (REASON) -->` right above its fence, for long tasks (npm, browsers); none has it now.
//! - Commands (lines joined at a trailing `\`, loops up to their `done`) run in order, as one
//!   bash script (`set -e`) in a fresh temporary directory, which holds a link `docs` to the
//!   repository's `docs/` (as a clone's root does), with `HOME` and `XDG_DATA_HOME` inside it
//!   (so the default data directory is too) and no `P2P_RELAY_*` variables from outside:
//!   - relay starts, and the relay's `token`/`config` subcommands. The one substitution:
//!     `cargo run --release --`, `cargo run --release` and `target/release/p2p-relay` become
//!     `p2p-relay`, a wrapper first on PATH. For a subcommand it runs the built binary
//!     (`env!("CARGO_BIN_EXE_p2p-relay")`) at once; for a start it records the arguments,
//!     environment and directory and returns, as if the node ran in a terminal of its own.
//!     After the script, the test starts each recorded node with exactly those.
//!   - setup commands, run as written: `openssl`, `head`, `printf`, `echo`, `cp`, `chmod`,
//!     `mkdir`, `cat`.
//!   - `redis-server --port N ...`: the test starts its own `redis-server` on that port
//!     (tests/redis; without redis-server the block is skipped, saying so, unless
//!     `P2P_TEST_REQUIRE_REDIS=1`).
//!   - `cargo build ...`: not run (cargo test has built the binary).
//!   - anything else (clients, npm, node, `kill`): not run; listed in the test's output.
//!
//! Ports are not substituted: the recipes' ports must be free here. They are fixed ports
//! outside the ephemeral range other tests bind, and the recipes run one after another; a
//! port that is busy anyway fails the recipe with the relay's own line naming the flag.

use crate::redis;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a node has to print its listening lines (a cluster node joins Redis first).
const START: Duration = Duration::from_secs(20);
/// How long the setup part of a recipe may take.
const SCRIPT: Duration = Duration::from_secs(60);

/// The recipes that must exist (file, the heading they sit under, nodes they start): the
/// ones issue 16 names. More recipes are run too; these cannot disappear unnoticed.
const REQUIRED: &[(&str, &str, usize)] = &[
    ("README.md", "The two commands", 1),
    (
        "README.md",
        "Authentication: binding clients to their clientId",
        1,
    ),
    ("README.md", "TLS: https and wss", 1),
    ("README.md", "Cluster mode: many relay nodes, one Redis", 2),
    (
        "README.md",
        "Configuration: defaults, a file, the environment, flags",
        1,
    ),
    ("README.md", "The demo page", 1),
    (
        "README.md",
        "Web pages on other origins, and restricting them (CORS)",
        1,
    ),
    (
        "docs/CLUSTER.md",
        "Three nodes on one machine, one Redis",
        3,
    ),
];

const SKIP_MARKER: &str = "<!-- recipe: not run";
const SETUP: &[&str] = &[
    "openssl", "head", "printf", "echo", "cp", "chmod", "mkdir", "cat",
];

/// One fenced command block.
#[derive(Debug, Clone)]
struct Block {
    file: String,
    /// 1-based line of the opening fence.
    line: usize,
    heading: String,
    commands: Vec<String>,
    skipped_by_marker: bool,
}

impl Block {
    fn name(&self) -> String {
        format!("{}:{} ({})", self.file, self.line, self.heading)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Starts the relay (or a loop that does).
    Start,
    /// `p2p-relay token` / `p2p-relay config`.
    Subcommand,
    Setup,
    /// `redis-server`, with the port it names.
    Redis(u16),
    CargoBuild,
    NotRun,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files searched: README.md and every docs/*.md.
fn documents() -> Vec<String> {
    let mut files = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("a docs entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The command blocks of one Markdown text.
fn blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut lines = text.lines().enumerate();
    let mut previous = "";
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        // Outside blocks (their lines are read below), a `#` line is a heading.
        if let Some(h) = trimmed.strip_prefix('#') {
            heading = h.trim_start_matches('#').trim().to_owned();
        }
        let Some(lang) = trimmed.strip_prefix("```") else {
            previous = line;
            continue;
        };
        let lang = lang.trim();
        let marker = previous.trim_start().starts_with(SKIP_MARKER);
        let mut body = Vec::new();
        for (_, inner) in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                break;
            }
            body.push(inner);
        }
        previous = "";
        let body: Vec<&str> = match lang {
            "sh" | "bash" | "shell" => body,
            "console" => body
                .iter()
                .filter_map(|l| l.trim_start().strip_prefix("$ "))
                .collect(),
            _ => continue,
        };
        out.push(Block {
            file: file.to_owned(),
            line: i + 1,
            heading: heading.clone(),
            commands: commands(&body),
            skipped_by_marker: marker,
        });
    }
    out
}

/// Logical commands: continuation lines joined, loops kept whole, comment lines dropped.
fn commands(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for line in lines {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let first = trimmed.split_whitespace().next().unwrap_or("");
        if matches!(first, "for" | "while" | "until") {
            depth += 1;
        }
        if first == "done" || first.starts_with("done;") {
            depth = depth.saturating_sub(1);
        }
        current.push_str(line);
        current.push('\n');
        if depth == 0 && !trimmed.ends_with('\\') {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// The words of one simple command, after its `VAR=value` assignments.
fn words(command: &str) -> Vec<String> {
    let joined = command.replace("\\\n", " ");
    let first_line = joined.lines().next().unwrap_or("");
    let words = shlex::split(first_line)
        .unwrap_or_else(|| first_line.split_whitespace().map(str::to_owned).collect());
    words
        .into_iter()
        .skip_while(|w| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .collect()
}

/// Whether `words` run the relay, and then with a subcommand or not.
fn relay(words: &[String]) -> Option<Kind> {
    let rest: &[String] = match words.first().map(String::as_str) {
        Some("p2p-relay" | "target/release/p2p-relay" | "./target/release/p2p-relay") => {
            &words[1..]
        }
        Some("cargo") if words.get(1).map(String::as_str) == Some("run") => {
            let (before, after) = match words.iter().position(|w| w == "--") {
                Some(i) => (&words[2..i], &words[i + 1..]),
                None => (&words[2..], &words[words.len()..]),
            };
            let other = before.iter().any(|w| {
                matches!(w.as_str(), "-p" | "--package" | "--bin" | "--example")
                    || w.starts_with("--package=")
                    || w.starts_with("--bin=")
            });
            if other || !before.iter().any(|w| w == "--release") {
                return None;
            }
            after
        }
        _ => return None,
    };
    match rest.first().map(String::as_str) {
        Some("token" | "config" | "help" | "--help" | "-h" | "--version" | "-V") => {
            Some(Kind::Subcommand)
        }
        _ => Some(Kind::Start),
    }
}

fn kind(command: &str) -> Kind {
    let w = words(command);
    if let Some(k) = relay(&w) {
        return k;
    }
    match w.first().map(String::as_str) {
        Some("for" | "while" | "until") => {
            // A loop starts the relay when a command of its body does.
            let starts = command
                .lines()
                .skip(1)
                .any(|l| relay(&words(l.trim().trim_start_matches("do "))) == Some(Kind::Start));
            if starts {
                Kind::Start
            } else {
                Kind::NotRun
            }
        }
        Some("redis-server") => {
            let port = w
                .iter()
                .position(|x| x == "--port")
                .and_then(|i| w.get(i + 1))
                .map_or(6379, |p| p.parse().expect("redis-server --port N"));
            Kind::Redis(port)
        }
        Some("cargo") if w.get(1).map(String::as_str) == Some("build") => Kind::CargoBuild,
        Some(program) if SETUP.contains(&program) => Kind::Setup,
        _ => Kind::NotRun,
    }
}

fn is_recipe(block: &Block) -> bool {
    block.commands.iter().any(|c| kind(c) == Kind::Start)
}

/// The one substitution: every spelling of "the relay" becomes the `p2p-relay` wrapper.
fn substitute(command: &str) -> String {
    let replaced = command
        .replace("cargo run --release -- ", "p2p-relay ")
        .replace("cargo run --release --\n", "p2p-relay\n");
    let mut out = String::new();
    let mut rest = replaced.as_str();
    // `cargo run --release` and `target/release/p2p-relay` as whole words only (not
    // `target/release/p2p-relay-client`).
    'scan: while !rest.is_empty() {
        for from in [
            "./target/release/p2p-relay",
            "target/release/p2p-relay",
            "cargo run --release",
        ] {
            if let Some(tail) = rest.strip_prefix(from) {
                let whole = tail
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || c == ';' || c == '&');
                let starts_word = out.is_empty() || out.ends_with(char::is_whitespace);
                if whole && starts_word {
                    out.push_str("p2p-relay");
                    rest = tail;
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The wrapper called `p2p-relay` on the recipes' PATH.
const WRAPPER: &str = r#"#!/usr/bin/env bash
# p2p-relay as the recipe test runs it (tests/e2e/recipes.rs): subcommands run now; a start is
# recorded (arguments, environment, directory) for the test to run as a node.
set -e
case "$1" in
  token|config|help|-h|--help|-V|--version)
    out=$("$P2P_RECIPE_BINARY" "$@")
    printf '%s\n' "$out"
    if [ "$1" = token ]; then
      n=$(mktemp -d "$P2P_RECIPE_NODES/token.XXXXXX")
      printf '%s\0' "$@" > "$n/args"
      printf '%s' "$out" > "$n/token"
    fi
    exit 0;;
esac
n=$(mktemp -d "$P2P_RECIPE_NODES/node.$(date +%s%N).XXXXXX")
pwd > "$n/cwd"
printf '%s\0' "$@" > "$n/args"
env -0 > "$n/env"
"#;

/// A recorded start or token command.
struct Recorded {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

fn nul_split(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn recorded(nodes: &Path, prefix: &str) -> Vec<(PathBuf, Recorded)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(nodes).expect("the nodes directory") {
        let dir = entry.expect("an entry").path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let args = nul_split(&std::fs::read(dir.join("args")).expect("args"));
        let env = std::fs::read(dir.join("env"))
            .map(|e| {
                nul_split(&e)
                    .into_iter()
                    .filter_map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cwd = std::fs::read_to_string(dir.join("cwd"))
            .map(|c| PathBuf::from(c.trim_end_matches('\n')))
            .unwrap_or_default();
        out.push((dir, Recorded { args, env, cwd }));
    }
    // In the order the recipe started them (the names begin with the time).
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A node started from a recorded command, killed when dropped.
struct Node {
    child: Child,
    args: Vec<String>,
    stderr: Arc<Mutex<String>>,
    socketio: String,
    admin: String,
}

impl Node {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

async fn start(recipe: &str, r: &Recorded) -> Result<Node, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
        .args(&r.args)
        .env_clear()
        .envs(r.env.iter().cloned())
        .current_dir(&r.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "{recipe}: cannot start `p2p-relay {}`: {e}",
                r.args.join(" ")
            )
        })?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("piped stderr");
    let sink = stderr.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut socketio = None;
    let mut admin = None;
    let listening = tokio::time::timeout(START, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("Socket.IO gateway listening on ") {
                socketio = Some(url.to_owned());
            }
            if let Some(url) = line.strip_prefix("Admin listening on ") {
                admin = Some(url.to_owned());
                return true;
            }
        }
        false
    })
    .await;
    let command = format!("p2p-relay {}", r.args.join(" "));
    match (listening, socketio, admin) {
        (Ok(true), Some(socketio), Some(admin)) => {
            // Keep reading stdout so that the node never blocks on it.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(Node {
                child,
                args: r.args.clone(),
                stderr,
                socketio,
                admin,
            })
        }
        (Err(_), ..) => {
            let _ = child.kill().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let err = stderr.lock().unwrap().clone();
            Err(format!(
                "{recipe}: `{command}` printed no listening lines within {START:?}; stderr:\n{err}"
            ))
        }
        _ => {
            let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                other => format!("{other:?}"),
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
            let err = stderr.lock().unwrap().clone();
            let hint = if err.contains("already in use") {
                "\n(a port this recipe names is busy on this machine: stop what holds it, or \
                 change the recipe's ports for every node in README.md/docs)"
            } else {
                ""
            };
            Err(format!(
                "{recipe}: `{command}` stopped before listening ({status}); stderr:\n{err}{hint}"
            ))
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        // The TLS recipe's certificate is self-signed; what is checked here is that it serves.
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

async fn get(client: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e:#}"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| format!("GET {url}: {e:#}"))?;
    Ok((status, body))
}

/// The checks of one running node: it answers /healthz and an engine.io handshake, and a
/// cluster node has joined.
async fn serves(recipe: &str, node: &Node) -> Result<(), String> {
    let client = http();
    let who = format!("{recipe}: `p2p-relay {}`", node.args.join(" "));
    let (status, body) = get(&client, &format!("{}/healthz", node.admin)).await?;
    if status != 200 {
        return Err(format!("{who}: /healthz answered {status} {body}"));
    }
    let url = format!("{}/socket.io/?EIO=4&transport=polling", node.socketio);
    let (status, body) = get(&client, &url).await?;
    if status != 200 || !body.starts_with("0{\"sid\":") {
        return Err(format!(
            "{who}: the engine.io handshake answered {status} {body}"
        ));
    }
    if node.args.iter().any(|a| a == "--cluster") {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !node.stderr().contains("joined the cluster") {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "{who}: no `joined the cluster` line: {}",
                    node.stderr()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// A Socket.IO 2.x connection (engine.io 3, polling) as `client_id` with `token`, if any:
/// true when the relay admits it (a `40` connect packet), false when it refuses it (`44`).
async fn admitted(node: &Node, client_id: &str, token: Option<&str>) -> Result<bool, String> {
    let client = http();
    let mut query = format!("EIO=3&transport=polling&clientId={client_id}");
    if let Some(token) = token {
        query.push_str(&format!("&token={token}"));
    }
    let base = format!("{}/socket.io/", node.socketio);
    let (_, open) = get(&client, &format!("{base}?{query}")).await?;
    let json = open
        .split_once(":0")
        .map(|(_, json)| json)
        .ok_or_else(|| format!("not an engine.io 3 handshake: {open}"))?;
    let sid = serde_json::from_str::<serde_json::Value>(json)
        .map_err(|e| format!("{e}: {open}"))?["sid"]
        .as_str()
        .ok_or_else(|| format!("no sid: {open}"))?
        .to_owned();
    let (_, packets) = get(&client, &format!("{base}?{query}&sid={sid}")).await?;
    if packets.contains(":40") {
        Ok(true)
    } else if packets.contains(":44") {
        Ok(false)
    } else {
        Err(format!("neither a connect nor a refusal: {packets}"))
    }
}

/// Runs one recipe: its script, then its nodes, then the checks. Err says what broke.
async fn run(block: &Block) -> Result<usize, String> {
    let name = block.name();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    let bin = root.join(".recipe-bin");
    let nodes = root.join(".recipe-nodes");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&nodes).unwrap();
    std::fs::create_dir_all(root.join(".local/share")).unwrap();
    std::os::unix::fs::symlink(repo().join("docs"), root.join("docs")).unwrap();
    let wrapper = bin.join("p2p-relay");
    std::fs::write(&wrapper, WRAPPER).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let mut script = String::from("set -e\n");
    let mut redis_ports = Vec::new();
    for command in &block.commands {
        match kind(command) {
            Kind::Start | Kind::Subcommand | Kind::Setup => {
                script.push_str(&substitute(command));
            }
            Kind::Redis(port) => redis_ports.push(port),
            Kind::CargoBuild => {}
            Kind::NotRun => eprintln!("{name}: not run: {}", command.trim_end()),
        }
    }
    script.push_str("wait\n");
    std::fs::write(root.join(".recipe.sh"), &script).unwrap();

    let mut redis = Vec::new();
    for port in redis_ports {
        match redis::Redis::start_on(port).await {
            Some(r) => redis.push(r),
            None => {
                eprintln!("SKIPPED {name}: it needs redis-server");
                return Ok(0);
            }
        }
    }

    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("bash");
    shell
        .arg(".recipe.sh")
        .current_dir(root)
        .env("PATH", path)
        .env("HOME", root)
        .env("XDG_DATA_HOME", root.join(".local/share"))
        .env("P2P_RECIPE_BINARY", env!("CARGO_BIN_EXE_p2p-relay"))
        .env("P2P_RECIPE_NODES", &nodes)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("P2P_RELAY_") {
            shell.env_remove(key);
        }
    }
    let output = tokio::time::timeout(SCRIPT, shell.output())
        .await
        .map_err(|_| format!("{name}: its commands took longer than {SCRIPT:?}:\n{script}"))?
        .map_err(|e| format!("{name}: cannot run bash: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{name}: its commands failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }

    let starts = recorded(&nodes, "node.");
    if starts.is_empty() {
        return Err(format!("{name}: no node was started by:\n{script}"));
    }
    let mut running = Vec::new();
    let mut failures = Vec::new();
    for (_, r) in &starts {
        match start(&name, r).await {
            Ok(node) => running.push(node),
            Err(e) => failures.push(e),
        }
    }
    for node in &running {
        if let Err(e) = serves(&name, node).await {
            failures.push(e);
        }
    }
    // A token the recipe minted admits its `--sub` on the recipe's token-checking nodes,
    // and the same id without it is refused.
    let checking: Vec<&Node> = running
        .iter()
        .filter(|n| n.args.windows(2).any(|w| w == ["--auth", "token"]))
        .collect();
    for (dir, r) in recorded(&nodes, "token.") {
        let token = std::fs::read_to_string(dir.join("token")).unwrap();
        let sub = r
            .args
            .iter()
            .position(|a| a == "--sub")
            .and_then(|i| r.args.get(i + 1))
            .cloned()
            .unwrap_or_default();
        if checking.is_empty() {
            failures.push(format!(
                "{name}: a token was minted, but no node checks tokens"
            ));
        }
        for node in &checking {
            match (
                admitted(node, &sub, Some(token.trim())).await,
                admitted(node, &sub, None).await,
            ) {
                (Ok(true), Ok(false)) => {
                    eprintln!("{name}: its token admits '{sub}', who is refused without it")
                }
                other => failures.push(format!(
                    "{name}: the recipe's token for '{sub}' (admitted, refused without): {other:?}"
                )),
            }
        }
    }
    let count = running.len();
    for mut node in running {
        let _ = node.child.kill().await;
    }
    drop(redis);
    if failures.is_empty() {
        Ok(count)
    } else {
        Err(failures.join("\n\n"))
    }
}

fn all_blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(repo().join(file)).expect("a document");
            blocks(file, &text)
        })
        .collect()
}

/// Every recipe in README.md and docs/*.md, one after another (they share ports): each
/// runs as written and every node it starts serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipe_that_starts_the_relay_runs_as_written() {
    let recipes: Vec<Block> = all_blocks()
        .into_iter()
        .filter(is_recipe)
        .filter(|b| {
            if b.skipped_by_marker {
                eprintln!("not run (marked): {}", b.name());
            }
            !b.skipped_by_marker
        })
        .collect();
    let mut started = BTreeMap::new();
    let mut failures = Vec::new();
    for block in &recipes {
        eprintln!("recipe {}", block.name());
        match run(block).await {
            Ok(nodes) => {
                started.insert((block.file.clone(), block.heading.clone()), nodes);
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "recipes that do not run:\n\n{}",
        failures.join("\n\n")
    );
    let redis = redis::available();
    for (file, heading, nodes) in REQUIRED {
        let key = (file.to_string(), heading.to_string());
        match started.get(&key) {
            None => panic!(
                "no recipe under '{heading}' in {file}: {:?}",
                started.keys()
            ),
            Some(0) if !redis => {} // skipped for want of redis-server, and said so
            Some(n) => assert_eq!(
                n, nodes,
                "nodes started by the recipe under '{heading}' in {file}"
            ),
        }
    }
}

/// The rule of which blocks are recipes, on the shapes the documents use.
#[test]
fn recipes_are_told_from_other_blocks() {
    let text = "# One\n```sh\ncargo run --release\n```\n\
                ## Two\n```sh\ncargo run --release -p p2p-relay-client-cli --bin p2p-relay-client -- list\n\
                target/release/p2p-relay-load emit --spawn target/release/p2p-relay\n```\n\
                ## Three\n```console\n$ p2p-relay config --verbose\nsocketio_listen = 1\n```\n\
                ## Four\n```sh\nfor n in 1 2; do\n  target/release/p2p-relay --data-dir n$n &\ndone\n```\n\
                ## Five\n<!-- recipe: not run (npm) -->\n```bash\nP2P_RELAY_X=1 cargo run --release -- \\\n  --verbose\n```\n\
                ```js\ncargo run --release\n```\n";
    let found = blocks("sample", text);
    let summary: Vec<(String, bool, bool)> = found
        .iter()
        .map(|b| (b.heading.clone(), is_recipe(b), b.skipped_by_marker))
        .collect();
    let expected = [
        ("One", true, false),
        ("Two", false, false),
        ("Three", false, false),
        ("Four", true, false),
        ("Five", true, true),
    ];
    let expected: Vec<(String, bool, bool)> = expected
        .iter()
        .map(|(h, r, m)| (h.to_string(), *r, *m))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(found[4].commands.len(), 1, "a continuation is one command");
    assert_eq!(kind(&found[2].commands[0]), Kind::Subcommand);
    assert_eq!(
        substitute("target/release/p2p-relay --x & target/release/p2p-relay-client y\n"),
        "p2p-relay --x & target/release/p2p-relay-client y\n"
    );
    assert_eq!(
        substitute("cargo run --release -- token --sub A\n"),
        "p2p-relay token --sub A\n"
    );
    assert_eq!(
        kind("redis-server --port 6390 --save '' &\n"),
        Kind::Redis(6390)
    );
}
