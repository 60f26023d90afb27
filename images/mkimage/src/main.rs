//! `kasane-mkimage`: check a manifest, or build an ISO from it.
//!
//! Usage:
//!   kasane-mkimage check MANIFEST
//!   kasane-mkimage build --manifest M --hvm HVM --out ISO --work DIR [--component NAME=PATH]...

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use kasane_mkimage::{build_image, compile_manifest, ImageSpec};

const USAGE: &str = "usage:\n  kasane-mkimage check MANIFEST\n  kasane-mkimage build --manifest M --hvm HVM --out ISO --work DIR [--component NAME=PATH]...";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kasane-mkimage: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("check") if args.len() == 2 => {
            let manifest = compile_manifest(&PathBuf::from(&args[1])).map_err(|e| e.to_string())?;
            println!("{}: ok ({} cell(s))", args[1], manifest.cells.len());
            Ok(())
        }
        Some("build") => {
            let mut manifest = None;
            let mut hvm = None;
            let mut out = None;
            let mut work = None;
            let mut components = BTreeMap::new();
            let mut rest = args[1..].iter();
            while let Some(flag) = rest.next() {
                let value = rest
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
                match flag.as_str() {
                    "--manifest" => manifest = Some(PathBuf::from(value)),
                    "--hvm" => hvm = Some(PathBuf::from(value)),
                    "--out" => out = Some(PathBuf::from(value)),
                    "--work" => work = Some(PathBuf::from(value)),
                    "--component" => {
                        let (name, path) = value
                            .split_once('=')
                            .ok_or_else(|| format!("--component wants NAME=PATH, got `{value}`"))?;
                        components.insert(name.to_owned(), PathBuf::from(path));
                    }
                    other => return Err(format!("unknown option `{other}`\n{USAGE}")),
                }
            }
            let missing = |what: &str| format!("missing {what}\n{USAGE}");
            let manifest_path = manifest.ok_or_else(|| missing("--manifest"))?;
            let manifest = compile_manifest(&manifest_path).map_err(|e| e.to_string())?;
            let hvm = hvm.ok_or_else(|| missing("--hvm"))?;
            let out = out.ok_or_else(|| missing("--out"))?;
            let work = work.ok_or_else(|| missing("--work"))?;
            let spec = ImageSpec {
                hvm: &hvm,
                components,
                manifest: &manifest,
                work: &work,
                output: &out,
            };
            build_image(&spec).map_err(|e| e.to_string())?;
            println!("{}", out.display());
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    }
}
