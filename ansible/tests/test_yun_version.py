"""Unit tests of the version-skew filter (roles/yun_common/filter_plugins/yun_version.py).

Cases mirror controller/src/compliance/tests.rs, plus the "never newer" rule.
Run: python3 -m unittest discover -s ansible/tests
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "roles", "yun_common", "filter_plugins"))

from ansible.errors import AnsibleFilterError  # noqa: E402
from yun_version import FilterModule, agent_skew, agent_skews  # noqa: E402  pylint: disable=import-error


class SkewPolicy(unittest.TestCase):
    def verdict(self, agent, controller="0.3.2"):
        return agent_skew(agent, controller)["verdict"]

    def test_same_and_behind_are_allowed(self):
        for agent, expected in [
            ("0.3.2", "same"),
            ("0.3.2+build.7", "same"),
            ("0.3.1", "behind"),
            ("0.3.2-rc.1", "behind"),
            ("0.2.9", "behind"),
            ("0.2.0", "behind"),
        ]:
            with self.subTest(agent=agent):
                result = agent_skew(agent, "0.3.2")
                self.assertEqual(result["verdict"], expected)
                self.assertTrue(result["allowed"])

    def test_two_minors_or_an_older_major_are_refused(self):
        self.assertEqual(self.verdict("0.1.9"), "unsupported")
        self.assertEqual(self.verdict("0.0.1"), "unsupported")
        self.assertEqual(agent_skew("0.9.0", "1.0.0")["verdict"], "unsupported")
        self.assertFalse(agent_skew("0.1.9", "0.3.2")["allowed"])

    def test_an_agent_newer_than_the_controller_is_refused(self):
        for agent in ["0.3.3", "0.4.0", "1.0.0", "0.3.2"]:
            with self.subTest(agent=agent):
                controller = "0.3.2-rc.1" if agent == "0.3.2" else "0.3.2"
                result = agent_skew(agent, controller)
                self.assertEqual(result["verdict"], "newer")
                self.assertFalse(result["allowed"])
                self.assertIn("upgrade the controller first", result["reason"])

    def test_different_pre_releases_are_not_ordered(self):
        result = agent_skew("0.3.2-rc.2", "0.3.2-rc.1")
        self.assertEqual(result["verdict"], "unordered")
        self.assertFalse(result["allowed"])

    def test_unparseable_versions_fail_loudly(self):
        for bad in ["test", "", "1.2", "1.2.3.4", "1.x.3", "1..3", "1.2.3-", "v1.2.3"]:
            with self.subTest(bad=bad):
                with self.assertRaises(AnsibleFilterError):
                    agent_skew(bad, "0.3.2")

    def test_every_controller_is_checked(self):
        verdicts = agent_skews("0.3.0", ["0.3.0", "0.2.5"])
        self.assertEqual([v["verdict"] for v in verdicts], ["same", "newer"])

    def test_the_filters_are_registered(self):
        filters = FilterModule().filters()
        self.assertIs(filters["yun_agent_skew"], agent_skew)
        self.assertIs(filters["yun_agent_skews"], agent_skews)


if __name__ == "__main__":
    unittest.main()
