"""`make gateway`: Debian's nginx with the project's forward-auth config, in front of the
sample model API, on the local stack.

The config is `gateway/nginx/` with its `${...}` placeholders filled (as the official nginx
image does with envsubst). The gateway's own key (a platform gateway key: `keys:verify` and
`keys:verify:any-account`) is made once with the operators' CLI and kept in
`.data/gateway-key` (mode 0600); the rendered config that holds it is mode 0600 too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from devstack import paths, services
from devstack.procs import Managed

GATEWAY_PORT = int(os.environ.get("GATEWAY_PORT", "8080"))
SAMPLE_API_PORT = int(os.environ.get("SAMPLE_API_PORT", "8090"))
BARE_PORT = int(os.environ.get("GATEWAY_BARE_PORT", str(GATEWAY_PORT + 1)))
"""nginx in front of the sample API without forward auth: the benchmark's baseline."""
NGINX = Managed("nginx")
SAMPLE_API = Managed("sample-api")
NGINX_RUN = paths.RUN / "nginx"
TEMPLATES = paths.ROOT / "gateway" / "nginx"
GATEWAY_KEY_FILE = paths.DATA / "gateway-key"
GATEWAY_ACCOUNT = "platform"


def gateway_url() -> str:
    return f"http://127.0.0.1:{GATEWAY_PORT}"


def sample_api_url() -> str:
    return f"http://127.0.0.1:{SAMPLE_API_PORT}"


def nginx_binary() -> str:
    """Debian's nginx, installed with apt-get when it is missing and we are root."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(
            "nginx is missing: install Debian's nginx-light (apt-get install nginx-light)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "nginx-light"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def gateway_key(kafka: str, database_url: str) -> str:
    """The gateway's own key, made once (a platform gateway key) and kept 0600."""
    if GATEWAY_KEY_FILE.exists():
        return GATEWAY_KEY_FILE.read_text().strip()
    done = subprocess.run(
        [
            sys.executable, "-m", "services.keys.cli", "create", "--account", GATEWAY_ACCOUNT,
            "--name", "nginx gateway", "--scope", "keys:verify",
            "--scope", "keys:verify:any-account", "--json",
        ],
        env=services.service_env(kafka, database_url, "keys"),
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"gateway key: {done.stdout}{done.stderr}".strip())
    secret = str(json.loads(done.stdout)["key"])
    paths.ensure_dirs()
    fd = os.open(GATEWAY_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def render(template: str, values: dict[str, str]) -> str:
    """Fill `${NAME}` placeholders (only those named in `values`; nginx's own `$vars` stay)."""
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def write_config(kafka: str, database_url: str) -> Path:
    keys = next(s for s in services.SERVICES if s.name == "keys")
    values = {
        "INSTAGEN_GATEWAY_LISTEN": f"127.0.0.1:{GATEWAY_PORT}",
        "INSTAGEN_BARE_LISTEN": f"127.0.0.1:{BARE_PORT}",
        "INSTAGEN_KEYS_ADDR": f"127.0.0.1:{keys.port}",
        "INSTAGEN_MODEL_ADDR": f"127.0.0.1:{SAMPLE_API_PORT}",
        "INSTAGEN_GATEWAY_KEY": gateway_key(kafka, database_url),
        "INSTAGEN_RUN": str(NGINX_RUN),
        "INSTAGEN_LOGS": str(paths.LOGS),
    }
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (NGINX_RUN / "tmp" / temp).mkdir(parents=True, exist_ok=True)
    conf = NGINX_RUN / "nginx.conf"
    for name, target in (
        ("templates/instagen.conf.template", "instagen.conf"),
        ("nginx.conf", "nginx.conf"),
    ):
        path = NGINX_RUN / target
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(render((TEMPLATES / name).read_text(), values))
    return conf


def start(kafka: str, database_url: str) -> list[str]:
    """Start the sample API and nginx unless they run; returns what was started."""
    started = []
    paths.ensure_dirs()
    if not SAMPLE_API.running():
        env = {**os.environ, "SAMPLE_API_PORT": str(SAMPLE_API_PORT)}
        SAMPLE_API.start([sys.executable, "-m", "gateway.sample_api"], env=env)
        started.append("sample-api")
    if not NGINX.running():
        binary = nginx_binary()
        conf = write_config(kafka, database_url)
        check = subprocess.run(
            [binary, "-t", "-p", str(NGINX_RUN), "-c", str(conf)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if check.returncode != 0:
            raise SystemExit(f"nginx config test failed:\n{check.stderr}")
        NGINX.start([binary, "-p", str(NGINX_RUN), "-c", str(conf), "-g", "daemon off;"])
        started.append("nginx")
    return started


def stop() -> list[str]:
    return [m.name for m in (NGINX, SAMPLE_API) if m.stop()]


async def wait_ready(timeout: float = 30.0) -> None:
    """Until nginx and the sample API both answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while loop.time() < deadline:
            for managed in (NGINX, SAMPLE_API):
                if not managed.running():
                    raise SystemExit(f"{managed.name} exited; see {managed.log_file}")
            try:
                gateway = await client.get(f"{gateway_url()}/gateway/health")
                sample = await client.get(f"{sample_api_url()}/ping")
                if gateway.status_code == 200 and sample.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the gateway did not answer within {timeout:.0f}s")
