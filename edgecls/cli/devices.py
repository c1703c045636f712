"""The ``device`` commands: ``edgecls device check DEVICE``; parse, call ``edgecls.api``, print."""

from __future__ import annotations

import typer

from edgecls import api
from edgecls.cli.options import DeviceArg, DevicePython, Json, SshConfig
from edgecls.cli.output import emit_json, notes

app = typer.Typer(help="The device a model will run on, reached over ssh (check it; bench --device times there).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command("check")
def check(device: DeviceArg, device_python: DevicePython = "python3", ssh_config: SshConfig = None,
          json_out: Json = False):
    """Check DEVICE: its CPU and the features that pick int8/fp16 kernels, memory, Python, runtimes.

    Nothing is installed there: each missing runtime is one line with the pip install to run there.
    """
    result = api.check_device(device, device_python=device_python, ssh_config=ssh_config)
    if json_out:
        notes(result.missing)
        emit_json(result)
        return
    for line in result.lines():
        typer.echo(line)
    notes(result.missing)
