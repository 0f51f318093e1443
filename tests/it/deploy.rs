//! deploy/ checked as far as a machine without a container engine allows: the Kubernetes manifests
//! against the Kubernetes schemas (kubernetes-validate, strict), the compose file against the
//! Compose Specification (check-jsonschema), the Dockerfile with hadolint and Docker's own parser,
//! all installed by tests/setup/30-deploy.sh; then what
//! the schemas cannot see: the ConfigMap's TOML passes sandgate's own configuration loader, the
//! probes, ports and labels agree with each other and with the configuration, the Dockerfile's
//! stages fit together, and the binary started with the ConfigMap's file answers the probe paths.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sandgate::config::{env_var_name, RawConfig, KEYS};
use serde_json::Value;

const K8S: [&str; 5] =
    ["configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed by tests/setup/30-deploy.sh; fails with the command to run when missing.
fn tool(name: &str) -> PathBuf {
    let path = repo().join("target/deploy-venv/bin").join(name);
    assert!(
        path.exists(),
        "{name} is missing at {}: run `bash tests/setup/30-deploy.sh` (or `bash tests/run.sh`)",
        path.display()
    );
    path
}

fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program).args(args).current_dir(repo()).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every YAML document of a file, as JSON (read by PyYAML from the same virtual environment).
fn yaml(path: &Path) -> Vec<Value> {
    let (ok, out) = run(
        &tool("python"),
        &[
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')))))",
            path.to_str().unwrap(),
        ],
    );
    assert!(ok, "{}: {out}", path.display());
    serde_json::from_str(&out).unwrap()
}

fn manifest(name: &str) -> Value {
    let mut docs = yaml(&repo().join("deploy/k8s").join(name));
    assert_eq!(docs.len(), 1, "{name}: one resource per file");
    docs.remove(0)
}

fn configmap_toml() -> String {
    manifest("configmap.yaml")["data"]["sandgate.toml"].as_str().unwrap().to_owned()
}

#[test]
fn kubernetes_manifests_pass_strict_schema_validation() {
    let validate = tool("kubernetes-validate");
    let files: Vec<String> = K8S.iter().map(|f| format!("deploy/k8s/{f}")).collect();
    for version in ["1.27.0", "1.37.0"] {
        let mut args = vec!["--strict", "-k", version];
        args.extend(files.iter().map(String::as_str));
        let (ok, out) = run(&validate, &args);
        assert!(ok, "kubernetes {version}:\n{out}");
        for f in K8S {
            assert!(
                out.lines().any(|l| l.contains(f) && l.contains("passed")),
                "{f} not reported as passed for {version}:\n{out}"
            );
        }
    }
    // The validator does reject a wrong field (so the pass above means something).
    let broken = repo().join("target/deploy-broken-deployment.yaml");
    let text = std::fs::read_to_string(repo().join("deploy/k8s/deployment.yaml")).unwrap();
    std::fs::write(&broken, text.replace("readinessProbe:", "readinesProbe:")).unwrap();
    let (ok, out) = run(&validate, &["--strict", broken.to_str().unwrap()]);
    assert!(!ok && out.contains("readinesProbe"), "{out}");
}

#[test]
fn compose_file_passes_the_compose_specification() {
    let check = tool("check-jsonschema");
    let (ok, out) =
        run(&check, &["--builtin-schema", "vendor.compose-spec", "deploy/docker-compose.yml"]);
    assert!(ok, "{out}");
    let broken = repo().join("target/deploy-broken-compose.yml");
    let text = std::fs::read_to_string(repo().join("deploy/docker-compose.yml")).unwrap();
    std::fs::write(&broken, text.replace("    ports:", "    portz:")).unwrap();
    let (ok, out) =
        run(&check, &["--builtin-schema", "vendor.compose-spec", broken.to_str().unwrap()]);
    assert!(!ok && out.contains("portz"), "{out}");
}

#[test]
fn configmap_toml_passes_sandgates_loader() {
    let toml = configmap_toml();
    let config = RawConfig::from_toml(&toml)
        .and_then(|raw| raw.validate())
        .unwrap_or_else(|e| panic!("the ConfigMap's sandgate.toml: {e}"));
    assert!(config.listen.ip().is_unspecified(), "a pod listens on every address");
    assert!(config.rewrite.public_url.starts_with("https://"));
    // A typo in a key would be an error: the loader is strict, so the pass above means the keys are real.
    let typo = toml.replace("log_format", "log_formt");
    assert!(RawConfig::from_toml(&typo).and_then(|raw| raw.validate()).is_err());
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

#[test]
fn deployment_probes_ports_and_security_agree_with_the_configuration() {
    let deployment = manifest("deployment.yaml");
    let config = RawConfig::from_toml(&configmap_toml()).unwrap().validate().unwrap();
    let c = container(&deployment);
    let port = &c["ports"][0];
    assert_eq!(port["name"], "http");
    assert_eq!(port["containerPort"], config.listen.port());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");

    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(c["resources"][kind][res].is_string(), "{kind}.{res}");
        }
    }
    // Streams in flight get shutdown_grace to finish before the pod is killed.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > config.timeouts.shutdown_grace.as_secs());

    // The config file the container reads is the ConfigMap's key, where the volume puts it.
    let args: Vec<&str> =
        c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "serve");
    let file = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let mount = &c["volumeMounts"][0];
    let volume = &pod["volumes"][0];
    assert_eq!(mount["name"], volume["name"]);
    assert_eq!(volume["configMap"]["name"], manifest("configmap.yaml")["metadata"]["name"]);
    assert_eq!(
        Path::new(file),
        Path::new(mount["mountPath"].as_str().unwrap()).join("sandgate.toml")
    );
    // Every SANDGATE_* variable names a real configuration key.
    let known: Vec<String> = KEYS.iter().map(|k| env_var_name(k)).collect();
    for env in c["env"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        assert!(known.iter().any(|k| k == name), "{name} is not a sandgate key");
    }
}

#[test]
fn service_hpa_and_pdb_select_the_deployment() {
    let deployment = manifest("deployment.yaml");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let matches =
        |selector: &Value| selector.as_object().unwrap().iter().all(|(k, v)| &labels[k] == v);
    assert!(matches(&deployment["spec"]["selector"]["matchLabels"]));
    let service = manifest("service.yaml");
    assert!(matches(&service["spec"]["selector"]));
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        container(&deployment)["ports"][0]["name"]
    );
    let hpa = manifest("hpa.yaml");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    let min = hpa["spec"]["minReplicas"].as_u64().unwrap();
    assert!(min >= 2 && hpa["spec"]["maxReplicas"].as_u64().unwrap() > min);
    let pdb = manifest("pdb.yaml");
    assert!(matches(&pdb["spec"]["selector"]["matchLabels"]));
    // The budget leaves room to evict at the HPA's minimum.
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < min);
}

#[test]
fn compose_points_open_webui_at_sandgate_on_its_own_origin() {
    let compose = yaml(&repo().join("deploy/docker-compose.yml")).remove(0);
    let services = &compose["services"];
    let sandgate = &services["sandgate"];
    let webui = &services["open-webui"];
    let env = sandgate["environment"].as_object().unwrap();
    let listen: SocketAddr = env["SANDGATE_LISTEN"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        webui["environment"]["OPENAI_API_BASE_URL"],
        format!("http://sandgate:{}/v1", listen.port())
    );
    // sandgate's upstream comes from an environment variable of the host.
    assert!(env["SANDGATE_UPSTREAM"].as_str().unwrap().starts_with("${UPSTREAM_URL"));
    let known: Vec<String> = KEYS.iter().map(|k| env_var_name(k)).collect();
    for name in env.keys() {
        assert!(known.contains(name), "{name} is not a sandgate key");
    }
    // Published on different host ports: two origins.
    let published =
        |s: &Value| s["ports"][0].as_str().unwrap().split(':').next().unwrap().to_owned();
    assert_ne!(published(sandgate), published(webui));
    assert_eq!(sandgate["ports"][0].as_str().unwrap(), format!("{0}:{0}", listen.port()));
    assert_eq!(sandgate["build"]["dockerfile"], "deploy/Dockerfile");
    assert_eq!(sandgate["read_only"], true);
}

/// One stage of the Dockerfile: its base, its name and its instructions as (command, arguments,
/// flags), read by Docker's own parser.
#[derive(Debug)]
struct Stage {
    from: String,
    name: String,
    lines: Vec<(String, Vec<String>, Vec<String>)>,
}

fn dockerfile_stages() -> Vec<Stage> {
    let (ok, out) = run(
        &tool("python"),
        &[
            "-c",
            "import dockerfile, json, sys\n\
             print(json.dumps([[c.cmd.upper(), list(c.value), list(c.flags)]\n\
                               for c in dockerfile.parse_file(sys.argv[1])]))",
            "deploy/Dockerfile",
        ],
    );
    assert!(ok, "deploy/Dockerfile does not parse: {out}");
    let instructions: Vec<(String, Vec<String>, Vec<String>)> = serde_json::from_str(&out).unwrap();
    let mut stages: Vec<Stage> = Vec::new();
    for (cmd, args, flags) in instructions {
        if cmd == "FROM" {
            assert_eq!(args.len(), 3, "FROM <image> AS <name>: {args:?}");
            assert!(args[1].eq_ignore_ascii_case("AS"));
            stages.push(Stage { from: args[0].clone(), name: args[2].clone(), lines: Vec::new() });
        } else if let Some(stage) = stages.last_mut() {
            stage.lines.push((cmd, args, flags));
        }
    }
    stages
}

#[test]
fn dockerfile_passes_hadolint() {
    let (ok, out) = run(&tool("hadolint"), &["--failure-threshold", "style", "deploy/Dockerfile"]);
    assert!(ok, "{out}");
    // The linter is awake: a root user in the last stage is reported.
    let broken = repo().join("target/deploy-broken.Dockerfile");
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    std::fs::write(&broken, format!("{text}USER root\n")).unwrap();
    let (ok, out) =
        run(&tool("hadolint"), &["--failure-threshold", "style", broken.to_str().unwrap()]);
    assert!(!ok && out.contains("DL3002"), "{out}");
}

#[test]
fn dockerfile_stages_fit_together() {
    let stages = dockerfile_stages();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["builder", "pyodide", "base", "runtime-offline", "runtime"]);
    let by_name: BTreeMap<&str, &Stage> = stages.iter().map(|s| (s.name.as_str(), s)).collect();
    assert!(by_name["builder"].from.starts_with("rust:"));
    // The default target is the last stage: the small runtime built on `base`.
    assert_eq!(stages.last().unwrap().from, "base");
    assert_eq!(by_name["runtime-offline"].from, "base");
    let base = by_name["base"];
    assert!(base.from.contains("distroless"), "a small runtime image");

    // Every COPY --from names an earlier stage; every other COPY source exists in the repository.
    for (i, stage) in stages.iter().enumerate() {
        for (_, args, flags) in stage.lines.iter().filter(|(cmd, _, _)| cmd == "COPY") {
            match flags.iter().find_map(|f| f.strip_prefix("--from=")) {
                Some(from) => {
                    assert!(names[..i].contains(&from), "COPY {args:?}: no earlier stage {from}")
                }
                None => {
                    for src in &args[..args.len() - 1] {
                        assert!(
                            repo().join(src).exists(),
                            "COPY {args:?}: {src} is not in the repository"
                        );
                    }
                }
            }
        }
    }
    let find = |cmd: &str| -> Vec<String> {
        base.lines
            .iter()
            .find(|(c, _, _)| c == cmd)
            .unwrap_or_else(|| panic!("no {cmd} in the base stage"))
            .1
            .clone()
    };
    let user = find("USER");
    let uid = user[0].split(':').next().unwrap();
    assert!(uid.parse::<u32>().unwrap() > 0, "non-root: {user:?}");
    // ENV arguments come as name, value, name, value…
    let env = find("ENV");
    let listen =
        env.chunks(2).find(|kv| kv[0] == "SANDGATE_LISTEN").map(|kv| kv[1].clone()).unwrap();
    let listen: SocketAddr = listen.parse().unwrap();
    assert_eq!(find("EXPOSE"), [listen.port().to_string()]);
    assert_eq!(find("ENTRYPOINT"), ["/usr/local/bin/sandgate"]);
    assert_eq!(find("CMD"), ["serve"]);
    assert!(by_name["builder"].lines.iter().any(|(c, args, _)| c == "RUN"
        && args[0].contains("cargo build --release --locked --bin sandgate")));
    // Every SANDGATE_* variable the image sets names a real configuration key (or SANDGATE_CONFIG).
    let known: Vec<String> = KEYS.iter().map(|k| env_var_name(k)).collect();
    for stage in &stages {
        for (_, args, _) in stage.lines.iter().filter(|(c, _, _)| c == "ENV") {
            for kv in args.chunks(2) {
                let name = &kv[0];
                assert!(
                    name == "SANDGATE_CONFIG" || known.contains(name),
                    "{name} is not a sandgate key"
                );
            }
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    // One write for the whole request; a reset connection is tried again (twice) and reported on
    // stderr: a CI run once saw "connection reset" here on a loaded machine, which a probe retries too.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut last = None;
    for attempt in 1..=3 {
        let tried = (|| {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(request.as_bytes())?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok::<_, std::io::Error>(response)
        })();
        match tried {
            Ok(response) => {
                let status =
                    response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return (status, response);
            }
            Err(e) => {
                eprintln!("GET {path}, attempt {attempt}: {e}");
                last = Some(e);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    panic!("GET {path} failed three times, last: {last:?}")
}

/// The container's command line against the ConfigMap's file, as Kubernetes would run it (with
/// the listen address moved to a free loopback port): the probe paths answer 200.
#[test]
fn the_binary_with_the_configmap_answers_the_probe_paths() {
    let dir = repo().join("target/deploy-test");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sandgate.toml");
    std::fs::write(&file, configmap_toml()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandgate"))
        .args(["serve", "--config"])
        .arg(&file)
        .env("SANDGATE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut addr = None;
    let mut seen = String::new();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        // log_format = "json" in the ConfigMap: one JSON object per line.
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if v["fields"]["message"] == "sandgate listening" {
            addr = v["fields"]["addr"].as_str().map(|a| a.parse().unwrap());
            break;
        }
    }
    let addr: SocketAddr = addr.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("sandgate did not start:\n{seen}")
    });
    // Keep reading the log (sandgate must not write into a closed pipe), to show it on failure.
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        for line in lines.map_while(Result::ok) {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    let healthz = http_get(addr, "/healthz");
    let readyz = http_get(addr, "/readyz");
    let _ = child.kill();
    let _ = child.wait();
    seen.push_str(&rest.join().unwrap_or_default());
    assert_eq!(healthz.0, 200, "{}\nlog:\n{seen}", healthz.1);
    assert_eq!(readyz.0, 200, "{}\nlog:\n{seen}", readyz.1);
}
