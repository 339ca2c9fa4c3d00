"""Golden tests for :mod:`voxserve.protocol.common`: the messages the streaming protocols share."""

from __future__ import annotations

import pytest

from voxserve.errors import InvalidRequest, InvalidValue
from voxserve.protocol.common import AudioMessage, ErrorEvent, audio_from_frame, config_object


def test_audio_message_round_trip() -> None:
    message = AudioMessage(b"\x00\x01\xff\xfe")
    assert message.to_text() == '{"type":"audio","audio":"AAH//g=="}'
    assert AudioMessage.from_json({"type": "audio", "audio": "AAH//g=="}) == message
    assert AudioMessage.from_json({"type": "audio"}) == AudioMessage(b"")


@pytest.mark.parametrize(
    "audio", ["<base64>", "AAH/", "AA==" + "AA==", " AAAA", "AAAA=", "AA-_", 5, None, ["AAAA"]]
)
def test_audio_message_strict_base64(audio: object) -> None:
    if audio == "AAH/":
        assert AudioMessage.from_json({"audio": audio}).audio == b"\x00\x01\xff"
        return
    with pytest.raises(InvalidRequest) as info:
        AudioMessage.from_json({"type": "audio", "audio": audio})
    assert (info.value.code, info.value.message) == ("invalid_base64", "audio must be valid base64")


def test_audio_from_frame() -> None:
    assert audio_from_frame(b"\x01\x02") == b"\x01\x02"
    assert audio_from_frame('{"type":"audio","audio":"AQI="}') == b"\x01\x02"
    for frame, code in [
        ("{", "invalid_json"),
        ('{"type":"end"}', "unknown_message"),
        ('{"type":"audio","audio":"!"}', "invalid_base64"),
    ]:
        with pytest.raises(InvalidRequest) as info:
            audio_from_frame(frame)
        assert info.value.code == code


def test_error_event() -> None:
    assert ErrorEvent("invalid_json", "text messages must be JSON").to_json() == {
        "type": "error",
        "code": "invalid_json",
        "message": "text messages must be JSON",
    }


def test_config_object_messages() -> None:
    kwargs = {"binary_message": "binary!", "json_message": "json!"}
    assert config_object('{"type":"config","x":1}', **kwargs) == {"type": "config", "x": 1}
    cases: list[tuple[str | bytes, str]] = [
        (b"{}", "binary!"),
        ("{", "json!"),
        ('{"type":"audio"}', 'the first message must be {"type": "config", ...}'),
    ]
    for data, message in cases:
        with pytest.raises(InvalidValue) as info:
            config_object(data, **kwargs)
        assert (info.value.code, info.value.message) == ("invalid_config", message)
