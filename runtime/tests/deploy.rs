//! `buntime deploy` against a real `buntime serve` with the deployments
//! plugin: a project dir packed (its `.buntimeignore` honoured), uploaded,
//! served at the printed URL, replaced with `--replace`; an archive streamed
//! as it is; a refusal printed as the server words it.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, SHARED_MODULE_CACHE, announced_port, http_get};

/// The server's config: the deployments plugin on, the other core plugins
/// off (a debug build compiles plugins slowly).
const CONFIG: &str = r#"{ "plugins": [
    "@buntime/plugin-deployments",
    { "name": "@buntime/plugin-database", "enabled": false },
    { "name": "@buntime/plugin-keyval", "enabled": false }
] }"#;

struct Server {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let apps = dir.path().join("apps");
    std::fs::create_dir_all(&apps).expect("mkdir");
    std::fs::write(dir.path().join("buntime.jsonc"), CONFIG).expect("config");
    let mut child = Command::new(BIN)
        .env("RUNTIME_WORKER_DIRS", &apps)
        .env("RUNTIME_CONFIG", dir.path().join("buntime.jsonc"))
        .env("RUNTIME_CACHE_DIR", SHARED_MODULE_CACHE)
        .env("RUNTIME_PLUGIN_DIRS", dir.path().join("plugins"))
        .env("RUNTIME_DATA_DIR", dir.path().join("data"))
        .env("RUNTIME_HOST", "127.0.0.1")
        .env("PORT", "0")
        .env_remove("RUNTIME_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let port = announced_port(&mut child);
    Server { child, port, dir }
}

fn deploy(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("deploy")
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{}", server.port)])
        .env_remove("BUNTIME_API_KEY")
        .output()
        .expect("run buntime deploy")
}

#[test]
fn a_project_dir_is_packed_uploaded_and_served_at_the_printed_url() {
    let server = serve();
    let project = server.dir.path().join("work/hello/1.2.0");
    std::fs::create_dir_all(project.join("target")).expect("mkdir");
    std::fs::copy(buntime_fixtures::APP_ECHO, project.join("app.wasm")).expect("wasm");
    std::fs::write(project.join("worker.jsonc"), r#"{ "ttl": "1m" }"#).expect("worker");
    std::fs::write(project.join("target/big.bin"), vec![7u8; 1024]).expect("ignored");
    std::fs::write(project.join(".buntimeignore"), "target/\n").expect("ignore file");

    let out = deploy(&server, &[project.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("http://127.0.0.1:{}/hello@1.2.0/", server.port);
    assert_eq!(stdout.trim(), url);
    let res = http_get(server.port, "/hello@1.2.0/x");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    let installed = server.dir.path().join("apps/hello/1.2.0");
    assert!(installed.join("app.wasm").is_file());
    assert!(
        !installed.join("target").exists(),
        "the ignore file is honoured"
    );
    assert!(!installed.join(".buntimeignore").exists());

    // Deploying the same version again: the server's words, exit 1.
    let out = deploy(&server, &[project.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("VERSION_EXISTS") && stderr.contains("already deployed"),
        "{stderr}"
    );

    // With --replace: the installed version is swapped for the new files.
    std::fs::write(project.join("notes.txt"), "second").expect("write");
    let out = deploy(&server, &[project.to_str().expect("utf-8"), "--replace"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(installed.join("notes.txt")).expect("replaced"),
        "second"
    );

    // An archive, streamed from disk, named `<name>-<version>.tar.gz`.
    let archive = server.dir.path().join("work/hello-1.3.0.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&archive).expect("archive"),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", &project).expect("pack");
    tar.into_inner().expect("tar").finish().expect("gz");
    let out = deploy(&server, &[archive.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = http_get(server.port, "/hello@1.3.0/x");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");

    // A dir that is not an app: refused, named, nothing served.
    let broken = server.dir.path().join("work/broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join("readme.txt"), "hi").expect("write");
    let out = deploy(
        &server,
        &[broken.to_str().expect("utf-8"), "--version", "0.1.0"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no index.html and no .wasm module"),
        "{stderr}"
    );
}
