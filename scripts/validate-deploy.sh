#!/usr/bin/env bash
# Offline checks of the deploy files (deploy/): Kubernetes manifests against the schemas
# bundled in a pinned PyPI validator, the compose file, the HAProxy configs, the systemd
# unit and the example node configs' shell helpers. Fast; run by scripts/test.sh before
# the cargo steps. A check whose tool is missing is skipped with a printed reason.
#
# Tools: kubernetes-validate and check-jsonschema (PyPI, pinned below, installed once into
# a venv under ${XDG_CACHE_HOME:-~/.cache}/portcullis-ci); `docker compose` if present;
# haproxy (scripts/install-deps.sh installs it); systemd-analyze if present.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
DOCKERFILE_PARSER_VERSION=3.4.0   # PyPI `dockerfile`: Docker's own (buildkit) parser
# Kubernetes versions the manifests must be valid for (oldest supported, newest bundled).
K8S_VERSIONS=(1.30.0 1.37.0)

failed=0
fail() { echo "validate-deploy: FAIL: $*" >&2; failed=1; }
skip() { echo "validate-deploy: skipped: $*"; }
ok() { echo "validate-deploy: ok: $*"; }

# --- Python validators in a cached venv ---------------------------------------------------
venv="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-ci/venv"
want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION dockerfile==$DOCKERFILE_PARSER_VERSION"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.portcullis-pins" 2>/dev/null)" != "$want" ]; then
  echo "validate-deploy: installing $want into $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
  echo "$want" > "$venv/.portcullis-pins"
fi

# --- (a) Kubernetes manifests: bundled schemas, strict (unknown fields are errors) --------
manifests=(deploy/k8s/*.yaml)
for v in "${K8S_VERSIONS[@]}"; do
  if out=$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}" 2>&1); then
    ok "Kubernetes manifests valid for $v (${#manifests[@]} files, kubernetes-validate $KUBERNETES_VALIDATE_VERSION)"
  else
    fail "Kubernetes manifests against $v:"$'\n'"$out"
  fi
done
# The init container's shell: the config template renders into a valid id per pod.
tmpl=$("$venv/bin/python" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["node.toml.tmpl"])' deploy/k8s/configmap.yaml)
render=$("$venv/bin/python" -c 'import sys,yaml
d = yaml.safe_load(open(sys.argv[1]))
print(d["spec"]["template"]["spec"]["initContainers"][0]["command"][2])' deploy/k8s/statefulset.yaml)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/config" "$tmp/run"
printf '%s\n' "$tmpl" > "$tmp/config/node.toml.tmpl"
render=${render//\/config\//$tmp/config/}
render=${render//\/run\/portcullis\//$tmp/run/}
if POD_NAME=portcullis-2 sh -c "$render" >/dev/null && grep -qx 'id = 3' "$tmp/run/node.toml" \
  && grep -q 'node3.pem' "$tmp/run/node.toml" && ! grep -q '@' "$tmp/run/node.toml"; then
  ok "render-config init container turns portcullis-2 into node id 3"
else
  fail "render-config init container did not render portcullis-2 as node 3"
fi

# --- (b) docker-compose.yml ---------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  if out=$(docker compose -f deploy/docker-compose.yml config -q 2>&1); then
    ok "docker compose config -q deploy/docker-compose.yml"
  else
    fail "docker compose config:"$'\n'"$out"
  fi
else
  skip "docker compose config: the compose plugin is not installed (no 'docker compose'); using the schema check below"
fi
# Always: the Compose Specification schema bundled in check-jsonschema.
if out=$("$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/docker-compose.yml 2>&1); then
  ok "deploy/docker-compose.yml matches the Compose Specification schema (check-jsonschema $CHECK_JSONSCHEMA_VERSION)"
else
  fail "compose schema:"$'\n'"$out"
fi
# Files the compose file mounts must exist in the repository.
for f in deploy/compose/node1.toml deploy/compose/node2.toml deploy/compose/node3.toml deploy/compose/haproxy.cfg \
  deploy/compose/oidc/provider.mjs tests/oidc/package.json tests/oidc/package-lock.json deploy/Dockerfile; do
  [ -f "$f" ] || fail "docker-compose.yml mounts or builds from $f, which is missing"
done

# --- Dockerfile: parses with Docker's parser; two stages, non-root, the expected entry --------
# (No image is built here: that needs a Docker engine.)
if out=$("$venv/bin/python" - deploy/Dockerfile <<'PY' 2>&1
import sys, dockerfile
cmds = dockerfile.parse_file(sys.argv[1])
names = [c.cmd for c in cmds]
last = {c.cmd: c for c in cmds}
problems = []
if names.count("FROM") != 2:
    problems.append(f"expected 2 stages, found {names.count('FROM')}")
if not any(c.cmd == "COPY" and "--from=build" in c.flags for c in cmds):
    problems.append("the runtime stage does not COPY --from=build")
user = last.get("USER")
if user is None or user.value[0].split(":")[0] in ("root", "0"):
    problems.append("the final stage must run as a non-root USER")
if "ENTRYPOINT" not in last or list(last["ENTRYPOINT"].value) != ["portcullis"]:
    problems.append('ENTRYPOINT must be ["portcullis"]')
if "CMD" not in last or list(last["CMD"].value)[:2] != ["run", "--config"]:
    problems.append('CMD must start with ["run", "--config"]')
if "HEALTHCHECK" not in last:
    problems.append("no HEALTHCHECK")
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
); then
  ok "deploy/Dockerfile parses (two stages, non-root user, ENTRYPOINT portcullis, HEALTHCHECK)"
else
  fail "deploy/Dockerfile:"$'\n'"$out"
fi

# --- (c) HAProxy configs ------------------------------------------------------------------
if command -v haproxy >/dev/null 2>&1; then
  cfgs=(deploy/compose/haproxy.cfg)
  # The template `portcullis dev --lb` renders, once it exists: check a rendering with
  # loopback addresses ({{lb_*}} -> an address, {{*_servers}} -> three server lines).
  # `dev --lb` itself also runs `haproxy -c` on what it renders.
  if [ -f deploy/haproxy/haproxy.cfg.tmpl ]; then
    port=20000
    rendered="$tmp/haproxy.cfg.tmpl.rendered"
    : > "$rendered"
    while IFS= read -r line; do
      while [[ $line =~ \{\{([A-Za-z0-9_]+)\}\} ]]; do
        name=${BASH_REMATCH[1]}
        if [[ $name == *_servers ]]; then
          value=""
          for id in 1 2 3; do
            port=$((port + 2))
            value+="    server node$id 127.0.0.1:$port check addr 127.0.0.1 port $((port + 1))"$'\n'
          done
          value=${value%$'\n'}
        else
          port=$((port + 1))
          value="127.0.0.1:$port"
        fi
        line=${line/"${BASH_REMATCH[0]}"/$value}
      done
      printf '%s\n' "$line" >> "$rendered"
    done < deploy/haproxy/haproxy.cfg.tmpl
    cfgs+=("$rendered")
  fi
  for cfg in "${cfgs[@]}"; do
    # Names that do not resolve here (node1..3) are warnings thanks to init-addr none.
    if out=$(haproxy -c -f "$cfg" 2>&1); then
      ok "haproxy -c ${cfg/#$tmp\/haproxy.cfg.tmpl.rendered/deploy/haproxy/haproxy.cfg.tmpl (rendered)}"
    else
      fail "haproxy -c $cfg:"$'\n'"$out"
    fi
  done
else
  skip "haproxy -c: haproxy is not installed (scripts/install-deps.sh installs it)"
fi

# --- (d) systemd unit ---------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's binary exists: point it at a stub. Any message
  # (unknown key, bad value) counts as a failure: verify itself exits 0 for those.
  printf '#!/bin/sh\n' > "$tmp/portcullis"
  chmod +x "$tmp/portcullis"
  sed "s#/usr/local/bin/portcullis#$tmp/portcullis#" deploy/systemd/portcullis.service > "$tmp/portcullis.service"
  out=$(systemd-analyze verify "$tmp/portcullis.service" 2>&1) || true
  if [ -z "$out" ]; then
    ok "systemd-analyze verify deploy/systemd/portcullis.service"
  else
    fail "systemd-analyze verify deploy/systemd/portcullis.service:"$'\n'"$out"
  fi
else
  skip "systemd-analyze verify: systemd-analyze is not installed"
fi

# --- shell scripts ------------------------------------------------------------------------
for s in deploy/compose/gen-certs.sh; do
  bash -n "$s" || fail "bash -n $s"
done
if command -v openssl >/dev/null 2>&1; then
  if bash deploy/compose/gen-certs.sh "$tmp/secrets" 2 "DNS:portcullis" >/dev/null 2>&1 \
    && openssl verify -CAfile "$tmp/secrets/ca.pem" "$tmp/secrets/node2.pem" >/dev/null \
    && openssl x509 -in "$tmp/secrets/node2.pem" -noout -ext subjectAltName | grep -q 'DNS:localhost' \
    && [ "$(base64 -d < "$tmp/secrets/data.key" | wc -c)" = 32 ]; then
    ok "gen-certs.sh: CA, node certificates naming localhost, 32-byte data key"
  else
    fail "gen-certs.sh did not produce a valid CA, node certificates and data key"
  fi
else
  skip "gen-certs.sh: openssl is not installed"
fi

if [ "$failed" != 0 ]; then
  echo "validate-deploy: some checks failed" >&2
  exit 1
fi
echo "validate-deploy: all deploy checks passed"
