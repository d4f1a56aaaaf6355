"""The shared service contract (auth, errors, names, body limit, KServe V2, survival) on the
real SmolLM2 model served by vLLM in a Serve replica."""

from __future__ import annotations

from typing import ClassVar

import pytest

from serve_common.testkit import ServiceConformance

pytestmark = pytest.mark.slow

MODEL_NAME = "smollm2"  # conftest.LLM_ARGS served name
TOO_LONG = "Paris " * 2100  # > max_model_len (2048) tokens


class TestLLMConformance(ServiceConformance):
    model_name = MODEL_NAME
    openai_path = "/v1/chat/completions"
    valid_request: ClassVar = {
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
        "temperature": 0,
    }
    bad_requests: ClassVar = [
        ({"messages": []}, 400),
        ({"messages": "hello"}, 400),
        ({"messages": [{"content": "a message without a role"}]}, 400),
        ({"messages": [42]}, 400),
        ({"messages": [{"role": "user", "content": TOO_LONG}]}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "top_p": 2}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "seed": "abc"}, 400),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": 5}, 400),
        (
            {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 99},
            400,
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "x"}}, 400),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "stream_options": {"include_usage": True},
            },
            400,
        ),
        (
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tool_choice": {"type": "function", "function": {"name": "missing"}},
            },
            400,
        ),
        (b"[1, 2, 3]", 400),
        (b"\xff\xfe\x00garbage", 400),
    ]
    v2_valid_inputs: ClassVar = [
        {"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["Paris is the"]}
    ]
    v2_output_names: ClassVar = ["text_output"]
    v2_bad_inputs: ClassVar = [
        [{"name": "text_input", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        [{"name": "text_input", "shape": [3], "datatype": "BYTES", "data": ["a"]}],
        [{"name": "text_input", "shape": [0], "datatype": "BYTES", "data": []}],
        [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": [TOO_LONG]}],
    ]

    @pytest.fixture(scope="class")
    def service_url(self, llm_url: str) -> str:
        return llm_url
