"""Evaluation tasks from local files, written as lm-evaluation-harness task YAMLs (Gao et al., EleutherAI lm-eval
0.4, ``docs/task_guide.md``): the same keys, the same prompt construction, the same few-shot samplers.

    task: my_mc
    dataset_path: json
    dataset_kwargs: {data_files: {train: train.jsonl, test: test.jsonl}}   # lm-eval's local JSON tasks
    output_type: multiple_choice        # | generate_until | loglikelihood_rolling
    doc_to_text: "Question: {{question}}\\nAnswer:"                         # Jinja, or a field name
    doc_to_choice: choices              # a list, a field name, or a template rendering a Python list
    doc_to_target: label                # an index into the choices (multiple_choice), else the answer text

A context is lm-eval's ``fewshot_context``: ``description`` (rendered on the doc), then each shot as
``doc_to_text + target_delimiter + doc_to_target + fewshot_delimiter``, then the doc's own text. Shots come from
``fewshot_split`` (else the training, validation or test split); drawn from the test split itself, ``k + 1`` are
drawn and the doc is left out (lm-eval's ``ContextSampler.get_context``). ``fewshot_config.sampler``: ``first_n``
(the split's first examples) or ``default`` (``random.Random(fewshot_seed).sample``, one generator per task run,
drawn doc after doc, so the shots are lm-eval's for the same seed; lm-eval's default seed is 1234).

``dataset_path`` is one of Hugging Face datasets' local builders, as lm-eval's local tasks use them: ``json``
(``.jsonl``, or ``.json`` holding a list or ``{"data": [...]}``), ``csv`` (``delimiter``, a header row or
``column_names``), ``text`` (one ``text`` per line; a split given as ``{field: file}`` zips parallel line files,
WMT's layout), each with ``dataset_kwargs.data_files: {split: file}``; or a file (every split is that file), or a
folder of ``<split>.jsonl`` etc. A relative path resolves against the YAML's folder, then against ``data_dir``.
Our keys beyond lm-eval's: ``chat_template`` (the context becomes a user message), ``lang`` (en | zh: metric
tokenisation), ``fewshot_seed``, ``columns`` (a header for ``.tsv`` files), ``process_docs`` by name (``squad``:
nested SQuAD/CMRC JSON, one doc per question); ``include:`` reads another YAML under this one, as lm-eval does.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lmstack.config import build, load_yaml, merge
from lmstack.errors import LmstackError
from lmstack.io import read_jsonl

BUILTIN_DIR = Path(__file__).resolve().parent / "tasks"
OUTPUT_TYPES = ("multiple_choice", "generate_until", "loglikelihood_rolling")
SAMPLERS = ("first_n", "default")
FEWSHOT_KEYS = ("sampler", "samples")
GENERATION_KEYS = ("until", "max_gen_toks", "do_sample", "temperature")
DOC_SUFFIXES = (".jsonl", ".json", ".tsv", ".csv", ".txt")
BUILDERS = ("json", "csv", "text")  # lm-eval's (Hugging Face datasets') local builders for dataset_path
SUFFIX_READERS = {".jsonl": "json", ".json": "json", ".tsv": "csv", ".csv": "csv", ".txt": "text"}
DATASET_KWARGS = ("data_files", "delimiter", "column_names", "field")


def squad_docs(records: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """SQuAD / CMRC2018 nested JSON (articles -> paragraphs -> qas) as one doc per question: id, title, context,
    question, answers (the answer texts; none for an unanswerable SQuAD v2 question)."""
    out = []
    for where, article in records:
        for i, paragraph in enumerate(article.get("paragraphs", [])):
            for j, qa in enumerate(paragraph.get("qas", [])):
                out.append((f"{where}.paragraphs[{i}].qas[{j}]",
                            {"id": qa.get("id", ""), "title": article.get("title", ""),
                             "context": paragraph.get("context", ""), "question": qa.get("question", ""),
                             "answers": [a["text"] for a in qa.get("answers", [])]}))
    return out


# process_docs by name (lm-eval's is a Python hook; a task file here names one of these)
PROCESSORS = {"squad": squad_docs}


@dataclass
class TaskSpec:
    """A task YAML, key for key (lm-eval's names; the last four are ours)."""
    task: str = ""
    output_type: str = "generate_until"
    dataset_path: str | None = None
    dataset_name: str | None = None
    dataset_kwargs: dict = field(default_factory=dict)
    training_split: str | None = None
    validation_split: str | None = None
    test_split: str = "test"
    fewshot_split: str | None = None
    doc_to_text: Any = ""
    doc_to_target: Any = ""
    doc_to_choice: Any = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_config: dict = field(default_factory=dict)
    generation_kwargs: dict = field(default_factory=dict)
    repeats: int = 1
    filter_list: list = field(default_factory=list)
    metric_list: list = field(default_factory=list)
    group: str | None = None
    tag: Any = None
    task_alias: str | None = None
    metadata: dict = field(default_factory=dict)
    chat_template: bool = False
    lang: str = "en"
    fewshot_seed: int = 1234
    columns: list[str] | None = None
    process_docs: str | None = None


@dataclass
class Doc:
    """One example: its index in its split, its fields, and where it was read (``file:line``) for messages."""
    id: int
    fields: dict
    where: str


def read_spec(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, Path]:
    """A task YAML's mapping with its ``include:`` chain merged under it (relative includes: the YAML's folder)."""
    path = Path(path)
    if path.resolve() in seen:
        raise LmstackError(f"{path}: include cycle ({' -> '.join(map(str, seen))})")
    values = load_yaml(path)
    include = values.pop("include", None)
    if include is None:
        return values, path
    base = Path(include) if Path(include).is_absolute() else path.parent / include
    if not base.is_file() and (BUILTIN_DIR / include).is_file():
        base = BUILTIN_DIR / include
    inherited, _ = read_spec(base, (*seen, path.resolve()))
    return merge(inherited, values), path


def task_path(name: str) -> Path:
    """A task given by YAML path, or by built-in name (``lmstack/eval/tasks/<name>.yaml``)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise LmstackError(f"{path}: task file not found")
        return path
    builtin = BUILTIN_DIR / f"{name}.yaml"
    if not builtin.is_file():
        names = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
        raise LmstackError(f"task {name!r}: neither a YAML file nor a built-in task (built-in: {', '.join(names)})")
    return builtin


class Task:
    """A task ready to run: its spec, its documents, and lm-eval's prompt functions over them."""

    def __init__(self, spec: TaskSpec, source: Path, data_dir: Path | None = None):
        self.spec, self.source, self.data_dir = spec, Path(source), data_dir
        self.name = spec.task or self.source.stem
        self._env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self._templates: dict[str, jinja2.Template] = {}
        self._splits: dict[str, list[Doc]] = {}
        self._check()

    @classmethod
    def load(cls, name: str, data_dir: Path | None = None) -> Task:
        path = task_path(name)
        values, _ = read_spec(path)
        spec = build(TaskSpec, values, str(path))
        return cls(spec, path, data_dir)

    # ---------------------------------------------------------------------------------------------- checks
    def error(self, message: str) -> LmstackError:
        return LmstackError(f"{self.source}: task {self.name}: {message}")

    def _check(self) -> None:
        s = self.spec
        if s.output_type not in OUTPUT_TYPES:
            raise self.error(f"output_type {s.output_type!r} is not one of {', '.join(OUTPUT_TYPES)}")
        if s.num_fewshot < 0:
            raise self.error(f"num_fewshot must be >= 0, got {s.num_fewshot}")
        if s.repeats < 1:
            raise self.error(f"repeats must be >= 1, got {s.repeats}")
        for key, valid, given in (("fewshot_config", FEWSHOT_KEYS, s.fewshot_config),
                                  ("generation_kwargs", GENERATION_KEYS, s.generation_kwargs),
                                  ("dataset_kwargs", DATASET_KWARGS, s.dataset_kwargs)):
            if not isinstance(given, dict):
                raise self.error(f"{key} must be a mapping (keys: {', '.join(valid)})")
            unknown = sorted(set(given) - set(valid))
            if unknown:
                raise self.error(f"{key}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        g = s.generation_kwargs
        until = g.get("until", [])
        if not (isinstance(until, str) or (isinstance(until, list) and all(isinstance(u, str) for u in until))):
            raise self.error(f"generation_kwargs.until must be a string or a list of strings, got {until!r}")
        for key, ok, expected in (("max_gen_toks", lambda v: type(v) is int and v >= 1, "an integer >= 1"),
                                  ("do_sample", lambda v: isinstance(v, bool), "true or false"),
                                  ("temperature", lambda v: type(v) in (int, float) and v >= 0, "a number >= 0")):
            if key in g and not ok(g[key]):
                raise self.error(f"generation_kwargs.{key} must be {expected}, got {g[key]!r}")
        if self.sampler not in SAMPLERS:
            raise self.error(f"fewshot_config.sampler {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if s.process_docs is not None and s.process_docs not in PROCESSORS:
            raise self.error(f"process_docs {s.process_docs!r} is not one of {', '.join(PROCESSORS)}")
        if s.output_type == "multiple_choice" and s.doc_to_choice is None:
            raise self.error("a multiple_choice task needs doc_to_choice (a list, a field name or a template)")
        if s.output_type == "loglikelihood_rolling" and s.num_fewshot:
            raise self.error("loglikelihood_rolling scores whole documents: num_fewshot must be 0")
        if s.dataset_path is None:
            raise self.error("dataset_path is missing (json with dataset_kwargs.data_files, a file or a folder)")
        if s.chat_template and s.output_type == "loglikelihood_rolling":
            raise self.error("chat_template applies to generate_until and multiple_choice tasks (a rolling "
                             "log-likelihood scores the plain document)")

    @property
    def sampler(self) -> str:
        return self.spec.fewshot_config.get("sampler", "default")

    # ---------------------------------------------------------------------------------------------- documents
    def _resolve(self, name: str | Path) -> Path:
        path = Path(name)
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [self.source.parent / path] + ([self.data_dir / path] if self.data_dir is not None else [])
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise self.error(f"data file {str(name)!r} not found (looked in {', '.join(str(c) for c in candidates)})")

    def _split_sources(self, split: str) -> list[tuple[str, Any]]:
        """(reader, path or {field: path}) for each file of ``split``."""
        s = self.spec
        if s.dataset_path in BUILDERS:
            files = s.dataset_kwargs.get("data_files")
            if isinstance(files, (str, list)):
                files = {"train": files}
            if not isinstance(files, dict) or split not in files:
                have = ", ".join(files) if isinstance(files, dict) else "none"
                raise self.error(f"split {split!r} has no file in dataset_kwargs.data_files (splits: {have})")
            if isinstance(files[split], dict):  # parallel line files: one field per file (WMT's layout)
                return [("parallel", {k: self._resolve(v) for k, v in files[split].items()})]
            names = files[split] if isinstance(files[split], list) else [files[split]]
            return [(s.dataset_path, self._resolve(n)) for n in names]
        path = self._resolve(s.dataset_path)
        if path.is_dir():
            found = [path / f"{split}{suffix}" for suffix in DOC_SUFFIXES if (path / f"{split}{suffix}").is_file()]
            if not found:
                raise self.error(f"{path}: no {split}{{{','.join(DOC_SUFFIXES)}}} file for split {split!r}")
            path = found[0]
        return [(SUFFIX_READERS.get(path.suffix.lower(), "text"), path)]

    def docs(self, split: str) -> list[Doc]:
        """The documents of ``split``, read once (then ``process_docs``)."""
        if split not in self._splits:
            records = [r for reader, source in self._split_sources(split) for r in getattr(self, f"_{reader}")(source)]
            for where, doc in records:
                if not isinstance(doc, dict):
                    raise LmstackError(f"{where}: a document must be a JSON object, got {type(doc).__name__}")
            if self.spec.process_docs is not None:
                records = PROCESSORS[self.spec.process_docs](records)
            if not records:
                raise self.error(f"split {split!r} holds no documents")
            self._splits[split] = [Doc(i, fields, where) for i, (where, fields) in enumerate(records)]
        return self._splits[split]

    def _json(self, path: Path) -> list[tuple[str, dict]]:
        if path.suffix.lower() == ".jsonl":
            return list(read_jsonl(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LmstackError(f"{path}: not valid JSON ({e})") from None
        data = data.get(self.spec.dataset_kwargs.get("field", "data")) if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise LmstackError(f"{path}: expected a list of documents or {{\"data\": [...]}}")
        return [(f"{path}[{i}]", d) for i, d in enumerate(data)]

    def _csv(self, path: Path) -> list[tuple[str, dict]]:
        kw = self.spec.dataset_kwargs
        delimiter = kw.get("delimiter", "\t" if path.suffix.lower() == ".tsv" else ",")
        with open(path, encoding="utf-8", newline="") as f:
            table = list(csv.reader(f, delimiter=delimiter,
                                    quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL))
        header = kw.get("column_names") or self.spec.columns
        start = 0 if header else 1
        header = header or (table[0] if table else [])
        rows = []
        for lineno, cells in enumerate(table[start:], start + 1):
            if len(cells) != len(header):
                raise LmstackError(f"{path}:{lineno}: {len(cells)} columns, expected {len(header)} "
                                   f"({', '.join(header)})")
            rows.append((f"{path}:{lineno}", dict(zip(header, cells))))
        return rows

    def _text(self, path: Path) -> list[tuple[str, dict]]:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [(f"{path}:{i}", {"text": line}) for i, line in enumerate(lines, 1) if line.strip()]

    def _parallel(self, paths: dict[str, Path]) -> list[tuple[str, dict]]:
        columns = {k: p.read_text(encoding="utf-8").splitlines() for k, p in paths.items()}
        counts = {k: len(v) for k, v in columns.items()}
        if len(set(counts.values())) > 1:
            raise self.error("parallel files differ in length: " + ", ".join(f"{paths[k]}: {n} lines"
                                                                              for k, n in counts.items()))
        first = next(iter(paths.values()))
        n = next(iter(counts.values()))
        return [(f"{first}:{i + 1}", {k: v[i] for k, v in columns.items()}) for i in range(n)]

    def test_docs(self) -> list[Doc]:
        return self.docs(self.spec.test_split)

    def fewshot_docs(self) -> tuple[list[Doc], str]:
        """The few-shot pool and its split's name (``fewshot_config.samples`` inline: split ``samples``)."""
        s = self.spec
        if "samples" in s.fewshot_config:
            samples = s.fewshot_config["samples"]
            if not isinstance(samples, list) or not all(isinstance(d, dict) for d in samples):
                raise self.error("fewshot_config.samples must be a list of documents (mappings)")
            return [Doc(i, d, f"{self.source}: fewshot_config.samples[{i}]") for i, d in enumerate(samples)], "samples"
        split = s.fewshot_split or s.training_split or s.validation_split or s.test_split
        return self.docs(split), split

    # ---------------------------------------------------------------------------------------------- rendering
    def render(self, template: str, doc: Doc, key: str) -> str:
        """A Jinja template on the doc's fields; a missing field is one line naming task, key, field and doc."""
        if template not in self._templates:
            try:
                self._templates[template] = self._env.from_string(template)
            except jinja2.TemplateSyntaxError as e:
                raise self.error(f"{key}: not a valid Jinja template ({e.message}, line {e.lineno})") from None
        try:
            return self._templates[template].render(**doc.fields)
        except jinja2.UndefinedError as e:
            raise self.error(f"{key}: {e.message} in the document at {doc.where} "
                             f"(its fields: {', '.join(doc.fields) or 'none'})") from None
        except jinja2.TemplateError as e:
            raise self.error(f"{key}: {e} in the document at {doc.where}") from None

    def _value(self, spec: Any, doc: Doc, key: str) -> Any:
        """lm-eval's rule: a field name gives the field, a string otherwise is a template, an int is itself."""
        if isinstance(spec, str) and spec in doc.fields:
            return doc.fields[spec]
        if isinstance(spec, str):
            return self.render(spec, doc, key)
        return spec

    def doc_to_text(self, doc: Doc) -> str:
        return str(self._value(self.spec.doc_to_text, doc, "doc_to_text"))

    def doc_to_choice(self, doc: Doc) -> list[str]:
        spec = self.spec.doc_to_choice
        if isinstance(spec, list):
            choices = [self.render(c, doc, "doc_to_choice") if isinstance(c, str) and "{" in c else c for c in spec]
        elif isinstance(spec, dict):
            choices = list(spec.values())
        else:
            choices = self._value(spec, doc, "doc_to_choice")
            if isinstance(choices, str):
                try:
                    choices = ast.literal_eval(choices)
                except (ValueError, SyntaxError):
                    raise self.error(f"doc_to_choice rendered {choices[:60]!r} for the document at {doc.where}: "
                                     "expected a list") from None
        if not isinstance(choices, list) or not choices:
            raise self.error(f"doc_to_choice gives no list of choices for the document at {doc.where}")
        return [str(c) for c in choices]

    def doc_to_target(self, doc: Doc) -> Any:
        """The gold answer: lm-eval's ``doc_to_target`` (a rendered digit string with choices becomes an index,
        a rendered ``[...]`` a list)."""
        target = self._value(self.spec.doc_to_target, doc, "doc_to_target")
        if isinstance(target, str) and self.spec.doc_to_choice is not None and target.strip().isdigit():
            return int(target)
        if isinstance(target, str) and len(target) >= 2 and target[0] == "[" and target[-1] == "]":
            try:
                return ast.literal_eval(target)
            except (ValueError, SyntaxError):
                return target
        return target

    def gold_indices(self, doc: Doc, choices: list[str]) -> list[int]:
        """The gold choice(s) of a multiple-choice doc as indices (a target may be the choice's text)."""
        target = self.doc_to_target(doc)
        golds = target if isinstance(target, list) else [target]
        out = []
        for g in golds:
            if isinstance(g, str) and g in choices:
                g = choices.index(g)
            if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < len(choices):
                raise self.error(f"doc_to_target {g!r} of the document at {doc.where} is neither an index into "
                                 f"its {len(choices)} choices nor one of them")
            out.append(g)
        return out

    def target_text(self, doc: Doc) -> str:
        """The target as a shot writes it (the gold choice's text for a choice task, the first of several)."""
        target = self.doc_to_target(doc)
        if self.spec.doc_to_choice is not None and not isinstance(target, str):
            choices = self.doc_to_choice(doc)
            return choices[self.gold_indices(doc, choices)[0]]
        if isinstance(target, list):
            return str(target[0]) if target else ""
        return str(target)

    def references(self, doc: Doc) -> list[str]:
        """A generate_until doc's reference answers (a choice index becomes the choice's text)."""
        target = self.doc_to_target(doc)
        if self.spec.doc_to_choice is not None and not isinstance(target, str):
            choices = self.doc_to_choice(doc)
            return [choices[i] for i in self.gold_indices(doc, choices)]
        return [str(t) for t in target] if isinstance(target, list) else [str(target)]

    # ---------------------------------------------------------------------------------------------- few-shot
    def contexts(self, docs: list[Doc], num_fewshot: int | None = None) -> list[str | list[dict]]:
        """Each doc's prompt with ``num_fewshot`` shots (default: the task's), drawn doc after doc from one
        generator seeded with ``fewshot_seed`` (lm-eval's order); chat messages when ``chat_template``."""
        k = self.spec.num_fewshot if num_fewshot is None else num_fewshot
        self.check_fewshot(k)
        pool, split = self.fewshot_docs() if k else ([], "")
        same = split == self.spec.test_split
        rng = random.Random(self.spec.fewshot_seed)
        out: list[str | list[dict]] = []
        for doc in docs:
            shots = []
            if k:
                drawn = pool[:k + same] if self.sampler == "first_n" else rng.sample(pool, k + same)
                shots = [d for d in drawn if d.fields != doc.fields][:k]
            out.append(self.context(doc, shots))
        return out

    def check_fewshot(self, k: int) -> None:
        """More shots than the few-shot split holds is one line, before anything runs."""
        if k < 0:
            raise self.error(f"the number of shots must be >= 0, got {k}")
        if not k:
            return
        pool, split = self.fewshot_docs()
        need = k + (split == self.spec.test_split)
        if need > len(pool):
            extra = " (k + 1: the shots come from the test split, leaving each doc out)" if need > k else ""
            raise self.error(f"{k}-shot needs {need} examples{extra} but few-shot split {split!r} holds {len(pool)}")

    def context(self, doc: Doc, shots: list[Doc]) -> str | list[dict]:
        """lm-eval's ``fewshot_context``: description + labelled shots + the doc's text."""
        s = self.spec
        description = self.render(s.description, doc, "description") if s.description else ""
        labeled = ""
        for shot in shots:
            labeled += self.doc_to_text(shot)
            target = self.target_text(shot)
            if target != "":  # lm-eval: a shot with an empty target gets no delimiters
                labeled += s.target_delimiter + target + s.fewshot_delimiter
        text = labeled + self.doc_to_text(doc)
        if s.chat_template:
            return ([{"role": "system", "content": description}] if description else []) + \
                [{"role": "user", "content": text}]
        return description + text

    def config(self) -> dict:
        """The spec as plain values (for the report)."""
        return {k: v for k, v in dataclasses.asdict(self.spec).items() if v not in (None, "", [], {})}
