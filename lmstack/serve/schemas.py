"""Request and response bodies of the OpenAI REST surface, as pydantic models (and so the OpenAPI document).

A request body takes every field of OpenAI's current request schemas (``docs/openai-fields.md`` says which are
honoured, which are accepted and ignored, as vLLM ignores them, and which are refused because their effect
cannot be honoured). A ``null`` means the field's default, as in OpenAI's API. Fields outside OpenAI's schema
(and our extensions ``top_k``, ``repetition_penalty``) land in ``model_extra``: the routes ignore them with a
logged warning, or refuse them under ``serve --strict``. Nested objects (messages, tools) refuse unknown
fields, so a misspelt parameter there is an error rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from lmstack.generate.config import INT64

Finite = Annotated[float, Field(allow_inf_nan=False)]
Temperature = Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)]
TopP = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]  # OpenAI's range
Seed = Annotated[int, Field(ge=INT64[0], le=INT64[1])]  # an int64, as in OpenAI's API
Bias = dict[str, Annotated[float, Field(ge=-100.0, le=100.0, allow_inf_nan=False)]]  # token id -> bias
Text = Annotated[str, Field(max_length=1_000_000)]
MAX_STOPS = 4  # OpenAI's limit
MAX_PROMPTS = 64


def _invalid(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _stops(value: Any) -> list[str]:
    """``stop`` as a list: a string, or at most four non-empty strings."""
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _invalid("stop", "expected a string or a list of at most 4 strings")
    if len(stops) > MAX_STOPS:
        raise _invalid("stop", f"at most {MAX_STOPS} stop sequences, got {len(stops)}")
    if not all(stops):
        raise _invalid("stop", "stop sequences may not be empty")
    return stops


def _token_rows(value: Any, what: str, most: int) -> list[str] | list[list[int]]:
    """A prompt or embedding input as a list of texts or a list of token-id lists: OpenAI takes a string, a
    list of strings, a list of token ids or a list of such lists."""
    def ids(row: Any) -> bool:
        return isinstance(row, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in row)

    if isinstance(value, str):
        return [value]
    if ids(value) and value:
        rows = [value]
    elif isinstance(value, list) and value and (all(isinstance(r, str) for r in value) or all(map(ids, value))):
        rows = value
    else:
        raise _invalid(what, "expected a string, a list of strings, a list of token ids or a list of lists of "
                             "token ids")
    if len(rows) > most:
        raise _invalid(what, f"at most {most} items, got {len(rows)}")
    for i, row in enumerate(rows):
        if isinstance(row, list) and (not row or min(row) < 0):
            raise _invalid(what, f"item {i} must hold at least one token id, each >= 0")
        if isinstance(row, str) and len(row) > 1_000_000:
            raise _invalid(what, f"item {i} is longer than 1,000,000 characters")
    return rows


Stops = Annotated[list[str], BeforeValidator(_stops)]


def Rows(what: str, most: int):  # noqa: N802 (a type)
    return Annotated[list[str] | list[list[int]], BeforeValidator(lambda v: _token_rows(v, what, most))]


def _refuse(reason: str):
    """A field accepted only when absent or null: its effect cannot be honoured here."""
    def check(value: Any) -> Any:
        if value is not None:
            raise _invalid("unsupported", reason)
        return value
    return AfterValidator(check)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A request body: unknown fields are kept in ``model_extra`` (the route warns or refuses); a null field
    means its default."""
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


# --------------------------------------------------------------------------------------------- requests

class TextPart(Strict):
    type: Literal["text"]
    text: Text


class OtherPart(BaseModel):
    """A content part this text model cannot read (image, audio, file) or has no place for (a refusal)."""
    model_config = ConfigDict(extra="allow")
    type: Literal["image_url", "input_audio", "file", "refusal"]


class FunctionCall(Strict):
    name: str
    arguments: str


class ToolCall(Strict):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart | OtherPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None  # an earlier reply's refusal: accepted and ignored (the template has no place)
    audio: dict[str, Any] | None = None  # an earlier audio reply's id: accepted and ignored

    @field_validator("content")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        for part in content if isinstance(content, list) else []:
            if part.type in ("image_url", "input_audio", "file"):
                raise _invalid("unsupported", f"{part.type} content parts are not supported: this model reads "
                                              "text only")
        return content

    def plain(self) -> dict[str, Any]:
        """The message as the chat template reads it (text parts joined; ``developer`` is ``system``)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(p.text for p in content if isinstance(p, TextPart))
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": content}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class FunctionSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Strict):
    type: Literal["function"]
    function: FunctionSpec


class NamedFunction(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # accepted and ignored: no padding is added to chunks


class JSONSchemaFormat(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise _invalid("missing", "type json_schema needs a json_schema object")
        return self

    def openai(self) -> dict[str, Any]:
        """The format as OpenAI spells it (``json_schema.schema``)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Sampling(Open):
    """Fields shared by both completion endpoints (OpenAI's defaults: temperature 1, top_p 1, n 1)."""
    model: str
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    top_k: Annotated[int, Field(ge=0)] = 0  # an extension, as in vLLM
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0, allow_inf_nan=False)] = 1.0  # an extension
    frequency_penalty: Penalty = 0.0
    presence_penalty: Penalty = 0.0
    logit_bias: Bias = Field(default_factory=dict)
    n: Annotated[int, Field(ge=1, le=16)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stops = Field(default_factory=list)
    seed: Seed | None = None
    user: str | None = None  # accepted and ignored
    response_format: ResponseFormat | None = None  # chat's; vLLM takes it on completions too

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


EXTENSIONS = frozenset({"top_k", "repetition_penalty"})  # our fields beyond OpenAI's (as vLLM names them)


class ChatRequest(Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True  # false: a reply keeps its first tool call only
    # accepted and ignored: no meaning for a local model
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prediction: dict[str, Any] | None = None  # predicted output speeds OpenAI up; the output is the same
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    reasoning_effort: str | None = None  # not a reasoning model
    verbosity: str | None = None
    safety_identifier: str | None = None
    # refused: their effect cannot be honoured
    audio: Annotated[Any, _refuse("audio output is not supported: this model writes text only")] = None
    functions: Annotated[Any, _refuse("the deprecated functions API is not supported; send tools")] = None
    function_call: Annotated[Any, _refuse("the deprecated functions API is not supported; send tool_choice")] = None
    moderation: Annotated[Any, _refuse("moderation is not available on this server")] = None
    web_search_options: Annotated[Any, _refuse("web search is not available on this server")] = None
    modalities: list[Literal["text", "audio"]] | None = None

    @field_validator("modalities")
    @classmethod
    def _text_out(cls, modalities: list[str] | None) -> list[str] | None:
        if modalities and modalities != ["text"]:
            raise _invalid("unsupported", "only ['text'] is supported: this model writes text only")
        return modalities


class CompletionRequest(Sampling):
    prompt: Rows("prompt", MAX_PROMPTS)  # texts, or token-id lists
    max_tokens: Annotated[int, Field(ge=0)] = 16  # 0 with echo: score the prompt only
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool = False
    best_of: Annotated[int, Field(ge=1, le=16)] | None = None  # only best_of = n: no re-ranking
    suffix: Annotated[str | None, AfterValidator(lambda s: _no_suffix(s))] = None


def _no_suffix(suffix: str | None) -> str | None:
    if suffix:
        raise _invalid("unsupported", "suffix (insertion) is not supported: the model only continues a prompt")
    return suffix


class EmbeddingRequest(Open):
    model: str
    input: Rows("input", 256)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None  # only the model's own width
    user: str | None = None


# --------------------------------------------------------------------------------------------- responses

class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ResponseToolCall] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: ChoiceLogprobs | None = None


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionLogprobs(BaseModel):
    """Per token: its text, log-probability (None for an echoed prompt's first token, which nothing
    predicts), offset in the choice's text and the most likely tokens."""
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: CompletionLogprobs | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lmstack"
    context_length: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
