"""``face2anime serve``: the local web app (Convert a photo; the blind rating Survey).

Bound to 127.0.0.1 unless ``--host`` says otherwise. There is no authentication: on a LAN
(``--host 0.0.0.0``) anyone who can reach the port can convert photos and submit answers.
``--simulate N`` does not serve: it writes N simulated raters' answers to the responses
file (ids ``sim-...``) to try the report, then exits.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import typer
from rich.console import Console

from face2anime.core.paths import CLASSIFIER_DIR, CYCLEGAN_DIR, RESPONSES_FILE, SURVEY_ITEMS, SURVEY_KEY
from face2anime.core.params import UserError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every network interface)"),
         port: int = typer.Option(8000, help="TCP port"),
         items: Path = typer.Option(SURVEY_ITEMS, help="survey items (the survey_items stage)"),
         responses: Path = typer.Option(RESPONSES_FILE,
                                        help="responses file (appended; an input of survey_report)"),
         models: Path = typer.Option(CYCLEGAN_DIR, help="trained methods"),
         classifier: Path = typer.Option(CLASSIFIER_DIR, help="guiding classifier (CAM overlay)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file"),
         max_upload_mb: float = typer.Option(10.0, help="largest accepted upload, MB"),
         max_pixels: int = typer.Option(64_000_000, help="largest accepted image, pixels (decompression bombs)"),
         simulate: int = typer.Option(0, help="write N simulated raters' answers to --responses and exit"),
         key: Path = typer.Option(SURVEY_KEY, help="blind key (only --simulate reads it)"),
         seed: int = typer.Option(0, help="seed of --simulate"),
         backend: str = typer.Option("torch", help="torch (models/cyclegan checkpoints) | onnx (models/onnx from "
                                                   "`face2anime export`: no PyTorch needed; no CAM overlay)")) -> None:
    """Serve the Convert and Survey pages (see docs/survey.md)."""
    console = Console()
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    if max_upload_mb <= 0 or max_pixels <= 0:
        raise UserError("--max-upload-mb and --max-pixels must be positive")
    if simulate:
        from face2anime.survey.simulate import simulate as run_simulation

        if simulate < 0:
            raise UserError(f"--simulate must be positive, got {simulate}")
        n = run_simulation(simulate, items, key, responses, seed)
        console.print(f"serve --simulate: {simulate} simulated raters wrote {n} answers to {responses}; "
                      "now run `dvc repro survey_report`")
        return

    import uvicorn

    from face2anime.web.app import Settings, create_app

    app = create_app(Settings(items_dir=items, responses=responses, cyclegan_dir=models, classifier_dir=classifier,
                              params_file=params, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                              max_pixels=max_pixels, backend=backend))
    if not is_loopback(host):
        console.print(f"[bold yellow]warning:[/] listening on {host}: anyone who can reach this machine on port "
                      f"{port} can use the app and submit survey answers. There is no authentication; "
                      "use it only on a network you trust, and stop it when the survey is over.")
    shown = f"[{host}]" if ":" in host else host
    console.print(f"face2anime serve: http://{shown}:{port}/ (Convert) and http://{shown}:{port}/survey "
                  f"(Survey; answers -> {responses}). Ctrl+C stops.", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
