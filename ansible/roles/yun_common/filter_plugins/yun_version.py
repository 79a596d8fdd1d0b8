"""The agent/controller version-skew policy as an Ansible filter.

Mirrors controller/src/compliance/version.rs (what `yun-controller compliance report` says) and
adds the rule the upgrade playbook enforces: an agent is never newer than the controller.

    {{ agent_version | yun_agent_skew(controller_version) }}
    -> {'verdict': 'same'|'behind'|'unsupported'|'newer'|'unordered', 'allowed': bool, 'reason': str}
    {{ agent_version | yun_agent_skews(controller_versions) }}  -> one such dict per controller

Versions are MAJOR.MINOR.PATCH[-PRE][+BUILD]; a pre-release ranks below its release, two
different pre-releases of the same version are not ordered, build metadata is ignored.
"""

import re

from ansible.errors import AnsibleFilterError

_VERSION = re.compile(r"^([0-9]+)\.([0-9]+)\.([0-9]+)(?:-([^+]+))?(?:\+.*)?$")


def parse_version(text):
    """(major, minor, patch, pre) of a version string, or AnsibleFilterError naming it."""
    match = _VERSION.match(str(text).strip())
    if not match:
        raise AnsibleFilterError(
            "version %r is not MAJOR.MINOR.PATCH[-PRE]: the skew policy cannot be checked" % (text,)
        )
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch), pre


def agent_skew(agent, controller):
    """Where an agent version stands against the controller's, and whether the policy allows it."""
    a_major, a_minor, a_patch, a_pre = parse_version(agent)
    c_major, c_minor, c_patch, c_pre = parse_version(controller)

    def verdict(name, allowed, reason):
        return {"verdict": name, "allowed": allowed, "reason": "agent %s, controller %s: %s" % (agent, controller, reason)}

    newer = verdict("newer", False, "the agent would be newer than the controller; upgrade the controller first")
    if a_major != c_major:
        if a_major > c_major:
            return newer
        return verdict("unsupported", False, "an older major version is outside the skew policy")
    if a_minor > c_minor:
        return newer
    if c_minor - a_minor >= 2:
        return verdict(
            "unsupported", False,
            "%d minor versions behind; the skew policy allows one" % (c_minor - a_minor),
        )
    if c_minor - a_minor == 1:
        return verdict("behind", True, "one minor version behind: allowed by the skew policy")
    if a_patch != c_patch:
        if a_patch > c_patch:
            return newer
        return verdict("behind", True, "an older patch release of the same minor: allowed")
    if a_pre == c_pre:
        return verdict("same", True, "same version")
    if a_pre is None:
        return newer  # the release ranks above the controller's pre-release
    if c_pre is None:
        return verdict("behind", True, "a pre-release of the controller's version: allowed")
    return verdict(
        "unordered", False,
        "two different pre-releases of the same version cannot be ordered; deploy the controller's build",
    )


def agent_skews(agent, controllers):
    """agent_skew against each of several controllers (all of them must allow the agent)."""
    return [agent_skew(agent, controller) for controller in controllers]


class FilterModule:  # pylint: disable=too-few-public-methods
    """Ansible entry point."""

    def filters(self):
        return {"yun_agent_skew": agent_skew, "yun_agent_skews": agent_skews}
