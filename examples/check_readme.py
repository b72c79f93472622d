"""Builds and runs the README's quick start as a reader would: the first C block under
"## Quick start" saved as the file its compile command names, with cb.h beside it, then
the commands of the sh block after it, the compile with -Wall -Wextra -Werror added.

    check_readme.py README.md cb.h OUT_DIR

Fails (exit 1) when the block or the command is missing, or either step fails."""
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

readme, header, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
text = pathlib.Path(readme).read_text()
section = text.split("\n## Quick start\n", 1)[-1].split("\n## ", 1)[0]
code = re.search(r"^```c\n(.*?)^```\n", section, re.S | re.M)
shell = code and re.search(r"^```sh\n(.*?)^```\n", section[code.end():], re.S | re.M)
if not code or not shell:
    sys.exit(f"{readme}: no ```c block followed by a ```sh block under '## Quick start'")
commands = [shlex.split(line) for line in shell.group(1).splitlines() if line.strip()]
compile_ = next((c for c in commands if c[0] == "cc"), None)
source = compile_ and next((a for a in compile_ if a.endswith(".c")), None)
if not source:
    sys.exit(f"{readme}: the quick start's sh block has no 'cc ... FILE.c' command")

out.mkdir(parents=True, exist_ok=True)
(out / source).write_text(code.group(1))
shutil.copy(header, out / "cb.h")
for argv in commands:
    if argv is compile_:
        argv = argv + ["-Wall", "-Wextra", "-Werror"]
    print("readme:", shlex.join(argv), flush=True)
    if subprocess.run(argv, cwd=out, timeout=120).returncode != 0:
        sys.exit(f"{readme}: the quick start failed at: {shlex.join(argv)}")
print(f"readme: the quick start builds and runs ({out / source})")
