"""The seed's two Python functions as WSGI applications, for `slokit compare`.

- ``auth``: the API-gateway token authorizer of the seed (AWS's blueprint,
  ``generatePolicy(principalId, effect, resource)``). The literal tokens
  ``allow``, ``deny`` and ``unauthorized`` select the answer, as in the
  blueprint; any other token must be an HS256 JWT signed with ``SECRET``.
- ``aes``: the seed's and FunctionBench's ``pyaes`` function: AES in counter
  mode over a random message, encrypted and decrypted ``iterations`` times.

Each is its own WSGI callable (``app:auth``, ``app:aes``), so a WSGI server
from PyPI serves one function per host, as slokit's own host does. The JSON
body of the POST carries the parameters; the reply is JSON and carries the
execution time in ``x-slokit-exec-us``. Run one by hand with::

    .venv/bin/gunicorn -b 127.0.0.1:8000 app:aes
    curl -d '{"length": 1024}' http://127.0.0.1:8000/
"""

import base64
import hashlib
import hmac
import json
import random
import string
import time

import pyaes

#: Secret of the HS256 tokens ``auth`` accepts besides the literal ones.
SECRET = b"slokit-example-secret"
#: FunctionBench's key (``pyaes`` example), as in slokit's built-in ``aes``.
KEY = bytes.fromhex("a1f6258c877d5fcd8964484538bfc92c")
#: Largest accepted body, bytes.
MAX_BODY = 1 << 20
#: Upper bound of ``length * iterations``, so no request runs for minutes.
MAX_WORK = 64 << 20


class BadRequest(Exception):
    """Bad parameters: answered 400 with the message."""


def generate_policy(principal_id, effect, resource):
    """The seed's ``generatePolicy``: an IAM policy for ``execute-api:Invoke``."""
    response = {"principalId": principal_id}
    if effect and resource:
        response["policyDocument"] = {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
            ],
        }
    response["context"] = {
        "stringKey": "stringValue",
        "numberKey": 123,
        "booleanKey": True,
    }
    return response


def _b64url(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_jwt(token):
    """The ``sub`` of a compact HS256 JWT signed with ``SECRET``, else None."""
    try:
        header, payload, signature = token.split(".")
        if json.loads(_b64url(header)).get("alg") != "HS256":
            return None
        expected = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url(signature)):
            return None
        return json.loads(_b64url(payload)).get("sub")
    except (ValueError, json.JSONDecodeError):
        return None


def run_auth(params):
    token = str(params.get("token", "allow"))
    if token.startswith("Bearer "):
        token = token[len("Bearer "):]
    arn = str(
        params.get(
            "method_arn",
            "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/orders/42",
        )
    )
    if token == "allow":
        return generate_policy("user", "Allow", arn)
    if token == "deny":
        return generate_policy("user", "Deny", arn)
    if token == "unauthorized":
        raise BadRequest("Unauthorized")
    subject = verify_jwt(token)
    if subject is None:
        raise BadRequest("Unauthorized: not a valid HS256 token")
    return generate_policy(subject, "Allow", arn)


def run_aes(params):
    try:
        length = int(params.get("length", 1024))
        iterations = int(params.get("iterations", 1))
        seed = int(params.get("seed", 0x51071A35))
    except (TypeError, ValueError) as e:
        raise BadRequest(f"length, iterations and seed must be integers: {e}")
    if not (1 <= length and 1 <= iterations and length * iterations <= MAX_WORK):
        raise BadRequest(f"need 1 <= length, 1 <= iterations, length * iterations <= {MAX_WORK}")
    rng = random.Random(seed)
    message = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))
    plaintext = message.encode()
    for _ in range(iterations):
        ciphertext = pyaes.AESModeOfOperationCTR(KEY, counter=pyaes.Counter(initial_value=1)).encrypt(
            plaintext
        )
        decrypted = pyaes.AESModeOfOperationCTR(KEY, counter=pyaes.Counter(initial_value=1)).decrypt(
            ciphertext
        )
        assert decrypted == plaintext
    return {"length": length, "iterations": iterations, "ciphertext_head": ciphertext[:32].hex()}


def _wsgi(function):
    def application(environ, start_response):
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = -1
        if not 0 <= size <= MAX_BODY:
            return _reply(start_response, "413 Payload Too Large", {"error": "body too large"}, 0)
        body = environ["wsgi.input"].read(size) if size else b""
        try:
            params = json.loads(body) if body.strip() else {}
            if not isinstance(params, dict):
                raise BadRequest("the body must be a JSON object")
            start = time.perf_counter_ns()
            result = function(params)
            exec_us = (time.perf_counter_ns() - start) // 1000
        except (BadRequest, json.JSONDecodeError, UnicodeDecodeError) as e:
            return _reply(start_response, "400 Bad Request", {"error": str(e)}, 0)
        return _reply(start_response, "200 OK", {"ok": True, "result": result}, exec_us)

    return application


def _reply(start_response, status, obj, exec_us):
    data = json.dumps(obj).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("x-slokit-exec-us", str(exec_us)),
        ],
    )
    return [data]


auth = _wsgi(run_auth)
aes = _wsgi(run_aes)
