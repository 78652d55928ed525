"""Checks for the external tools the provisioned server needs: Java 17+ and Maven."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from graphrec.errors import ProvisionError

#: Oldest Java major version Neo4j 5.26 runs on.
MIN_JAVA_MAJOR = 17

_VERSION_RE = re.compile(r'version "(?P<v>[^"]+)"')


def parse_java_version(text: str) -> int:
    """Return the major version from the output of ``java -version``.

    Handles both the modern (``"17.0.15"``, ``"21"``) and the legacy (``"1.8.0_392"``) formats.

    Raises:
        ProvisionError: The text carries no recognisable version.
    """
    m = _VERSION_RE.search(text)
    if not m:
        raise ProvisionError(f"could not read the Java version from `java -version`: {text.strip()[:200]!r}")
    parts = re.split(r"[._+-]", m.group("v"))
    try:
        major = int(parts[0])
        if major == 1 and len(parts) > 1:
            major = int(parts[1])
    except ValueError as e:
        raise ProvisionError(f"could not read the Java version from {m.group('v')!r}") from e
    return major


def find_java() -> str:
    """Return the ``java`` executable: ``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH.

    Raises:
        ProvisionError: No Java is installed.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise ProvisionError(
            f"Java not found: Neo4j 5.26 needs Java {MIN_JAVA_MAJOR} or 21 (install a JDK, e.g. `apt-get install openjdk-17-jre-headless`, "
            "or set JAVA_HOME), or point NEO4J_URI at an existing server"
        )
    return found


def check_java() -> tuple[str, int]:
    """Find Java and check that it is version 17 or newer.

    Returns:
        The executable and its major version.

    Raises:
        ProvisionError: Java is missing, does not run, or is older than 17.
    """
    java = find_java()
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise ProvisionError(f"could not run `{java} -version`: {e}") from e
    major = parse_java_version((proc.stderr or "") + (proc.stdout or ""))
    if major < MIN_JAVA_MAJOR:
        raise ProvisionError(
            f"Java {major} found at {java}, but Neo4j 5.26 needs Java {MIN_JAVA_MAJOR} or 21: install a newer JDK or set JAVA_HOME"
        )
    return java, major


def check_maven() -> str:
    """Return the ``mvn`` executable.

    Raises:
        ProvisionError: Maven is not installed.
    """
    found = shutil.which("mvn")
    if not found:
        raise ProvisionError(
            "Maven (`mvn`) not found: it is needed once to download the Neo4j jars from Maven Central "
            "(install it, e.g. `apt-get install maven`), or point NEO4J_URI at an existing server"
        )
    return found
