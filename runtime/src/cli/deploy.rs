//! `buntime deploy <dir|archive> --url URL --key KEY [--name N --version V] [--replace]`:
//! packs an app dir (skipping what `.buntimeignore` lists, gitignore syntax)
//! into a `.tar.gz`, or takes a `.tar.gz` / `.zip` as it is (streamed from
//! disk), uploads it to the deployments plugin (`POST /_/deployments/api/apps/<name>/<version>`,
//! a progress bar on a terminal) and prints the URL the new version is
//! served at. A refusal is printed as the server words it.
//!
//! Name and version: `--name` / `--version`; else a dir laid out as
//! `<name>/<version>/` (what `buntime app build` makes) names both; an
//! archive called `<name>-<version>.tar.gz` too.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// The file listing paths to leave out of a packed dir (gitignore syntax).
pub(super) const IGNORE_FILE: &str = ".buntimeignore";

/// `buntime deploy`'s arguments.
#[derive(Debug, clap::Args)]
pub(super) struct DeployArgs {
    /// The app dir to pack, or a `.tar.gz` / `.zip` archive.
    path: PathBuf,
    /// The server, e.g. `https://buntime.example.com`.
    #[arg(long, env = "BUNTIME_URL")]
    url: String,
    /// An API key with `apps:install`.
    #[arg(long, env = "BUNTIME_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The app's name (default: from the path).
    #[arg(long)]
    name: Option<String>,
    /// The version to deploy, e.g. 1.2.0 (default: from the path).
    #[arg(long = "version", id = "app_version")]
    version: Option<String>,
    /// Replace the version if it is already deployed (swapped atomically).
    #[arg(long)]
    replace: bool,
}

pub(super) async fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let (name, version) = name_and_version(&args.path, args.name, args.version)?;
    // A packed dir is in memory; an archive file is streamed from disk.
    type Chunks = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;
    let (chunks, size): (Chunks, u64) = if args.path.is_dir() {
        let archive = bytes::Bytes::from(pack_dir(&args.path)?);
        let size = archive.len() as u64;
        let pieces: Vec<std::io::Result<bytes::Bytes>> = (0..archive.len())
            .step_by(64 << 10)
            .map(|at| Ok(archive.slice(at..archive.len().min(at + (64 << 10)))))
            .collect();
        (Box::pin(futures_util::stream::iter(pieces)), size)
    } else {
        let file = tokio::fs::File::open(&args.path)
            .await
            .with_context(|| format!("cannot read {}", args.path.display()))?;
        let size = file
            .metadata()
            .await
            .with_context(|| format!("cannot read {}", args.path.display()))?
            .len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 << 10);
        (Box::pin(stream), size)
    };
    let base = args.url.trim_end_matches('/');
    let mut endpoint = format!("{base}/_/deployments/api/apps/{name}/{version}");
    if args.replace {
        endpoint.push_str("?replace=true");
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("uploading {name}@{version}"));
        bar
    });
    let progress = bar.clone();
    let stream = futures_util::StreamExt::inspect(chunks, move |c| {
        if let (Some(b), Ok(c)) = (&progress, c) {
            b.inc(c.len() as u64);
        }
    });
    let mut req = reqwest::Client::new()
        .post(&endpoint)
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream));
    if let Some(key) = &args.key {
        req = req.header("x-api-key", key);
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if status.is_success() {
        let path = body["path"]
            .as_str()
            .map_or_else(|| format!("/{name}@{version}/"), str::to_owned);
        println!("{base}{path}");
        return Ok(ExitCode::SUCCESS);
    }
    match (body["code"].as_str(), body["message"].as_str()) {
        (Some(code), Some(message)) => eprintln!("deploy refused ({status}, {code}): {message}"),
        _ => eprintln!("deploy refused ({status}): {}", text.trim()),
    }
    Ok(ExitCode::FAILURE)
}

/// The name and version to deploy under, from the flags or the path.
fn name_and_version(
    path: &Path,
    name: Option<String>,
    version: Option<String>,
) -> anyhow::Result<(String, String)> {
    let file = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let looks_like_version = |v: &str| semver::Version::parse(v).is_ok();
    let (guess_name, guess_version) = if path.is_dir() {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        match file(&path) {
            Some(last) if looks_like_version(&last) => (path.parent().and_then(file), Some(last)),
            last => (last, None),
        }
    } else {
        let stem = file(path).map(|f| {
            f.trim_end_matches(".tar.gz")
                .trim_end_matches(".tgz")
                .trim_end_matches(".zip")
                .to_owned()
        });
        match stem.as_deref().and_then(|s| s.rsplit_once('-')) {
            Some((n, v)) if looks_like_version(v) => (Some(n.to_owned()), Some(v.to_owned())),
            _ => (stem, None),
        }
    };
    let Some(name) = name.or(guess_name) else {
        bail!(
            "cannot tell the app's name from {}: pass --name",
            path.display()
        );
    };
    let Some(version) = version.or(guess_version) else {
        bail!(
            "cannot tell the version from {}: pass --version (e.g. --version 1.0.0), or deploy a dir laid out as <name>/<version>/",
            path.display()
        );
    };
    Ok((name, version))
}

/// Packs `dir` as a `.tar.gz`: files and symlinks (as links), paths relative
/// to `dir`, sorted; `.buntimeignore` entries and `.git` left out.
pub(super) fn pack_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let walk = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        if rel.as_os_str().is_empty() || rel == Path::new(IGNORE_FILE) {
            continue;
        }
        tar.append_path_with_name(entry.path(), rel)
            .with_context(|| format!("cannot pack {}", entry.path().display()))?;
    }
    Ok(tar.into_inner()?.finish()?)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::{name_and_version, pack_dir};

    #[test]
    fn name_and_version_come_from_flags_or_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let built = dir.path().join("hello/1.2.0");
        std::fs::create_dir_all(&built).expect("mkdir");
        let got = name_and_version(&built, None, None).expect("from the layout");
        assert_eq!(got, ("hello".into(), "1.2.0".into()));
        let got = name_and_version(&built, Some("other".into()), Some("2.0.0".into())).unwrap();
        assert_eq!(got, ("other".into(), "2.0.0".into()));
        let plain = dir.path().join("site");
        std::fs::create_dir_all(&plain).expect("mkdir");
        let err = name_and_version(&plain, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--version"), "{err}");
        let archive = dir.path().join("shop-0.3.1.tar.gz");
        let got = name_and_version(&archive, None, None).unwrap();
        assert_eq!(got, ("shop".into(), "0.3.1".into()));
    }

    #[test]
    fn a_dir_packs_without_what_the_ignore_file_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("public/cache")).unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::write(d.join("app.wasm"), b"\0asm").unwrap();
        std::fs::write(d.join("public/index.html"), b"hi").unwrap();
        std::fs::write(d.join("public/cache/x"), b"x").unwrap();
        std::fs::write(d.join("notes.log"), b"x").unwrap();
        std::fs::write(d.join(".git/HEAD"), b"x").unwrap();
        std::fs::write(d.join(".buntimeignore"), "*.log\ncache/\n").unwrap();
        let bytes = pack_dir(d).expect("pack");
        let mut names = Vec::new();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            names.push(e.path().unwrap().display().to_string());
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).unwrap();
        }
        assert_eq!(names, ["app.wasm", "public", "public/index.html"]);
    }
}
