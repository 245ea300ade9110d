"""Link keys in Secrets Manager (moto): rotation keeps links in flight, containers catch up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import moto
import pytest

from approvals import cli, keys, shortlinks, stack_outputs
from approvals.keys import Keys, fetch, rotate
from approvals.links import ForgedLink, KeyRing, LinkClaims, WeakKey, link_for, sign, verify
from approvals.models import ApprovalRequest
from tests.integration.conftest import API_URL, Stack, approval_id_of

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

SECRET = "approvals-signing-key"
ALICE, BOB = "alice@example.com", "bob@example.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def secrets() -> Iterator[tuple[SecretsManagerClient, list[str]]]:
    """A secret holding a first key, and the stages of every GetSecretValue made on it."""
    with moto.mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name=SECRET, SecretString="first-key-" + "x" * 40)
        reads: list[str] = []

        def count(params: dict[str, Any], **_: Any) -> None:
            reads.append(params.get("VersionStage", ""))

        client.meta.events.register("provide-client-params.secrets-manager.GetSecretValue", count)
        yield client, reads


def test_a_secret_never_rotated_has_one_key(secrets: tuple[SecretsManagerClient, list[str]]) -> None:
    client, _ = secrets
    ring = fetch(client, SECRET)
    assert ring.previous is None
    assert list(ring) == [ring.current]


def test_rotation_makes_a_new_current_key_and_keeps_the_old_one(
    secrets: tuple[SecretsManagerClient, list[str]],
) -> None:
    client, _ = secrets
    before = fetch(client, SECRET)
    after = rotate(client, SECRET)
    assert after.previous == before.current
    assert after.current != before.current
    assert len(after.current.secret) >= 32
    again = rotate(client, SECRET)
    assert again.previous == after.current
    assert not again.knows(before.current.key_id)  # retired by the second rotation


def test_a_link_of_an_unknown_key_rereads_the_ring_at_most_every_refresh_interval(
    secrets: tuple[SecretsManagerClient, list[str]],
) -> None:
    client, reads = secrets
    clock = Clock()
    container = Keys(client, SECRET, clock)
    container.verifying("")
    new_key = rotate(client, SECRET).current  # another container signs with it from now on
    token = shortlinks.token_for(new_key, "ab" * 16, ALICE)

    def makes_token(ring: KeyRing) -> bool:
        return shortlinks.made_by(ring, token, ALICE)

    reads.clear()
    clock.now += 1
    for _ in range(50):  # made-up key ids and tokens, as fast as anyone can send them
        assert not container.verifying("deadbeef").knows(new_key.key_id)
        assert not makes_token(container.holding(makes_token))
    assert reads == []
    clock.now += keys.REFRESH_SECONDS
    assert container.verifying(new_key.key_id).knows(new_key.key_id)
    assert reads == ["AWSCURRENT", "AWSPREVIOUS"]
    assert container.verifying(new_key.key_id).knows(new_key.key_id)  # known now: no more reads
    assert makes_token(container.holding(makes_token))
    assert len(reads) == 2


def test_a_warm_container_signs_with_the_new_key_once_its_ring_is_old(
    secrets: tuple[SecretsManagerClient, list[str]],
) -> None:
    client, _ = secrets
    clock = Clock()
    container = Keys(client, SECRET, clock)
    first = container.signing()
    new_key = rotate(client, SECRET).current
    clock.now += keys.MAX_AGE_SECONDS - 1
    assert container.signing() == first  # kept: still accepted as the previous key
    clock.now += 1
    assert container.signing() == new_key


def test_two_rotations_revoke_both_kinds_of_link_in_a_warm_container_once_its_ring_is_old(
    secrets: tuple[SecretsManagerClient, list[str]],
) -> None:
    """A container that read the keys before two rotations takes the retired key's links
    until its ring is ``MAX_AGE_SECONDS`` old, then reads the keys again and refuses them."""
    client, _ = secrets
    clock = Clock()
    container = Keys(client, SECRET, clock)
    retired = container.signing()
    claims = LinkClaims("ab" * 16, ALICE, 4_000_000_000)
    fields = {
        "approver": ALICE,
        "expires": str(claims.expires),
        "kid": retired.key_id,
        "sig": sign(retired, claims),
    }
    token = shortlinks.token_for(retired, claims.approval_id, ALICE)
    rotate(client, SECRET)
    rotate(client, SECRET)

    clock.now += keys.MAX_AGE_SECONDS - 1
    assert verify(container.verifying(retired.key_id), claims.approval_id, fields) == claims
    assert shortlinks.made_by(container.holding(lambda _: True), token, ALICE)
    clock.now += 1
    with pytest.raises(ForgedLink):
        verify(container.verifying(retired.key_id), claims.approval_id, fields)
    assert not shortlinks.made_by(container.holding(lambda _: True), token, ALICE)


@pytest.mark.parametrize("value", ["short", "x" * 31])
def test_a_key_shorter_than_32_bytes_is_refused_by_name(
    secrets: tuple[SecretsManagerClient, list[str]], value: str
) -> None:
    client, _ = secrets
    client.put_secret_value(SecretId=SECRET, SecretString=value)
    with pytest.raises(WeakKey, match=f"has {len(value)} bytes; at least 32"):
        Keys(client, SECRET).signing()


def test_links_in_flight_and_new_links_both_work_through_a_rotation(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API container is warm (it read the key before the rotation); the worker that
    signs the next link is cold (it reads the new key). Both links are honoured."""
    monkeypatch.setattr(keys, "REFRESH_SECONDS", 0.0)  # the rotation happens within the test's second
    stack.start(ApprovalRequest(title="Across a rotation", approvers=[ALICE, BOB], requester="ci"))
    old_link = stack.email(ALICE, "Across a rotation").links[0]
    assert stack.get(old_link).status == 200
    secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")
    new_key = rotate(secretsmanager, stack.resources.signing_secret_arn).current
    expires = int(stack.approval(approval_id_of(old_link)).expires_at.timestamp())
    new_link = link_for(API_URL, new_key, LinkClaims(approval_id_of(old_link), BOB, expires))

    assert stack.get(new_link).status == 200
    assert stack.click(new_link, "approve").status == 200
    # The request is settled (first response): the old link still verifies, so it is told so.
    settled = stack.post_link(old_link, "approve")
    assert settled.status == 409, settled.body[:300]


def _deployed_stack(outputs: dict[str, str]) -> None:
    """A CloudFormation stack with the outputs the CLI reads (moto: any resource will do)."""
    template = {
        "Resources": {"Anything": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="Approvals", TemplateBody=json.dumps(template)
    )


CLI_OUTPUTS = {
    stack_outputs.OUTPUT_API_URL: API_URL,
    stack_outputs.OUTPUT_STATE_MACHINE: "arn:aws:states:us-east-1:123456789012:stateMachine:approval",
    stack_outputs.OUTPUT_FANOUT_STATE_MACHINE: "arn:aws:states:us-east-1:123456789012:stateMachine:fanout",
    stack_outputs.OUTPUT_TABLE: "approvals",
    stack_outputs.OUTPUT_TOPIC: "arn:aws:sns:us-east-1:123456789012:approvals-emails",
}


def test_rotate_key_on_a_deployed_stack_rotates_the_secret_its_output_names(
    secrets: tuple[SecretsManagerClient, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    client, _ = secrets
    before = fetch(client, SECRET).current
    arn = client.describe_secret(SecretId=SECRET)["ARN"]
    _deployed_stack({**CLI_OUTPUTS, stack_outputs.OUTPUT_SIGNING_KEY: arn})
    assert cli.main(["rotate-key", "--stack-name", "Approvals", "--region", "us-east-1"]) == 0
    after = fetch(client, SECRET)
    assert after.previous == before
    printed = capsys.readouterr().out
    assert f"New link key {after.current.key_id} signs from now on" in printed
    assert f"links of key {before.key_id} keep working" in printed


def test_rotate_key_on_a_stack_deployed_before_keys_rotated_says_what_to_do(
    secrets: tuple[SecretsManagerClient, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _deployed_stack(CLI_OUTPUTS)
    assert cli.main(["rotate-key", "--stack-name", "Approvals", "--region", "us-east-1"]) == 2
    assert capsys.readouterr().err == (
        "approvals: stack 'Approvals' has no SigningKeySecretArn output: deploy this version first\n"
    )
