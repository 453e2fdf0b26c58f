"""The `govbot` command line: ask, kb validate|build, eval faq."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

app = typer.Typer(add_completion=False, no_args_is_help=True, help="govbot 政务智能问答")
kb_app = typer.Typer(no_args_is_help=True, help="知识库：校验与构建索引")
eval_app = typer.Typer(no_args_is_help=True, help="评测")
app.add_typer(kb_app, name="kb")
app.add_typer(eval_app, name="eval")
admin_app = typer.Typer(no_args_is_help=True, help="坐席与管理员账号")
app.add_typer(admin_app, name="admin")
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]错误：[/red]{message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Optional[callable]]:  # type: ignore[valid-type]
    """A rich progress bar on stderr; yields a `(stage, done, total)` callback."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or 1)
            bar.update(tasks[stage], completed=done, total=total or 1)

        yield update


@kb_app.command("validate")
def kb_validate(path: Path = typer.Argument(None, help="知识库目录（默认：内置知识库）")) -> None:
    """校验知识库：列出每个问题的文件、行号和字段。"""
    from knowledge import BUNDLED_CORPUS, load_corpus

    root = path or BUNDLED_CORPUS
    corpus, problems = load_corpus(root)
    for problem in problems:
        typer.echo(str(problem))
    typer.echo(f"{len(corpus.guides)} 个办事指南，{len(corpus.faq)} 条常见问题，{len(corpus.policies)} 个政策条款；"
               f"{len(problems)} 个问题")
    raise typer.Exit(1 if problems else 0)


@kb_app.command("build")
def kb_build(path: Path = typer.Argument(None, help="知识库目录（默认：内置知识库）"),
             quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """校验并构建检索索引（输入未变时直接复用）；出错时保留原索引。"""
    from retrieval import CorpusError, build_corpus_index, get_settings

    settings = get_settings()
    try:
        with progress_bar(not quiet) as update:
            folder, built = build_corpus_index(settings, corpus_dir=path, progress=update)
    except CorpusError as exc:
        for problem in exc.problems:
            err.print(str(problem), highlight=False)
        raise fail(f"知识库有 {len(exc.problems)} 个问题，未构建索引，原索引保持不变。", 1) from None
    typer.echo(f"索引{'已构建' if built else '已是最新'}：{folder}")


@app.command("ask")
def ask(question: str = typer.Argument(..., help="问题，例如：身份证丢了怎么补办"),
        aspect: Optional[str] = typer.Option(None, help="只看某一项：materials procedure fee time_limit ..."),
        situation: Optional[str] = typer.Option(None, help="情形 id，例如 minor"),
        as_json: bool = typer.Option(False, "--json", help="输出 JSON")) -> None:
    """向知识库提问，打印带出处的答案（不确定时说明将转人工）。"""
    from knowledge import ASPECTS
    from retrieval import KnowledgeService, render_card_text

    if not question.strip():
        raise fail("问题不能为空")
    if aspect and aspect not in ASPECTS:
        raise fail(f"未知的 aspect：{aspect}（可选：{', '.join(ASPECTS)}）")
    with progress_bar() as update:
        if update:
            update("加载知识库", 0, 1)
        kb = KnowledgeService()
        result = kb.answer(question, aspect=aspect, situation=situation)
    if as_json:
        typer.echo(json.dumps({"decision": result.decision, "aspect": result.aspect, "confidence": result.confidence,
                               "cards": result.cards,
                               "candidates": [{"id": h.doc_id, "title": h.title, "confidence": h.confidence}
                                              for h in result.hits]}, ensure_ascii=False, indent=2))
        return
    if result.decision == "answer":
        typer.echo("\n\n".join(render_card_text(c) for c in result.cards))
        return
    if result.decision == "clarify":
        typer.echo("没能确定您要办理的事项，您是想问：")
        for h in result.hits[:3]:
            typer.echo(f"  · {h.title}")
        return
    typer.echo("这个问题我没有把握回答，将为您转接人工客服。")


@eval_app.command("faq")
def eval_faq(kb: Path = typer.Option(..., "--kb", help="知识库 JSONL：{id, answer, question?, department?}"),
             questions: Path = typer.Option(..., "--questions", help="问题 JSONL：{query, expected: id|null}"),
             drop_answerable: float = typer.Option(0.0, "--drop-answerable", min=0.0, max=1.0,
                                                   help="先从知识库删除这一比例的有答案条目（测转人工）"),
             seed: int = typer.Option(0, "--seed"),
             as_json: bool = typer.Option(False, "--json", help="只输出 JSON")) -> None:
    """用生产检索流程评测 FAQ 问答：召回率、MRR、答对/答错/转人工。"""
    from retrieval.evaluate import EvalInputError, evaluate_faq

    try:
        with progress_bar(not as_json or sys.stderr.isatty()) as update:
            report = evaluate_faq(kb, questions, drop_answerable=drop_answerable, seed=seed, progress=update)
    except EvalInputError as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(report, ensure_ascii=False, indent=None if as_json else 2))


@admin_app.command("create-user")
def admin_create_user(
    username: str = typer.Argument(..., help="登录名"),
    role: str = typer.Option("clerk", "--role", help="clerk（坐席）或 admin（管理员）"),
    department: Optional[str] = typer.Option(None, "--department", help="所属部门（可选）"),
    display_name: Optional[str] = typer.Option(None, "--name", help="对市民显示的称呼，如“王老师”"),
    password_env: Optional[str] = typer.Option(None, "--password-env",
                                               help="从这个环境变量读密码（脚本用）；不给则交互输入"),
) -> None:
    """创建坐席或管理员账号（数据库：GOVBOT_DATABASE_URL，默认 var/govbot.db）。"""
    import os

    from .auth import create_clerk
    from .config import get_gateway_settings
    from .store import open_database

    if password_env:
        password = os.environ.get(password_env, "")
        if not password:
            raise fail(f"环境变量 {password_env} 为空")
    else:
        password = typer.prompt("密码（至少 8 位）", hide_input=True, confirmation_prompt=True)
    engine, factory = open_database(get_gateway_settings().database_url)
    try:
        view = create_clerk(factory, username, password, role, department, display_name)
    except ValueError as exc:
        raise fail(str(exc)) from None
    finally:
        engine.dispose()
    typer.echo(f"已创建 {view['role']} 账号“{view['username']}”（id {view['id']}）。")


@app.command("serve")
def serve(host: Optional[str] = typer.Option(None, "--host"), port: Optional[int] = typer.Option(None, "--port")) -> None:
    """只启动网关（Rasa 与动作服务器需另行运行；`make run` 会启动全部）。"""
    from .serve import main as serve_main

    serve_main([*(["--host", host] if host else []), *(["--port", str(port)] if port else [])])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
