"""The settings every function reads from its environment: one variable per setting, typed as its default."""

from __future__ import annotations

from connector_sla.config import ENVIRONMENT, Settings, from_environment
from devstack.functions import read_functions
from tests.support import load_template


def test_every_setting_names_its_variable_and_every_variable_one_setting():
    assert set(ENVIRONMENT) == set(Settings._fields)
    assert len(set(ENVIRONMENT.values())) == len(ENVIRONMENT)


def test_every_variable_the_template_sets_is_a_setting_or_a_powertools_one():
    # Given the environment of every function in the template
    declared: set[str] = set()
    for spec in read_functions(load_template()).values():
        declared |= set(spec.environment)

    # Then nothing the template sets goes unread, and only the local stack's allow list is not in the template
    assert {name for name in declared - set(ENVIRONMENT.values()) if not name.startswith("POWERTOOLS_")} == set()
    assert set(ENVIRONMENT.values()) - declared == {"OUTBOUND_ALLOWED_LOCAL_TARGETS"}


def test_unset_variables_keep_their_defaults():
    assert from_environment({}) == Settings()
    assert Settings().stage == "dev"
    assert Settings().evaluator_shards == 1
    assert Settings().replay_target_arns == ()


def test_each_value_takes_the_type_of_its_default():
    # Given a list, a number and a plain string set in the environment
    environ = {
        "REPLAY_TARGET_ARNS": " arn:aws:events:a , ,arn:aws:sqs:b ",
        "EVALUATOR_SHARDS": "3",
        "STAGE": "prod",
        "UNRELATED": "ignored",
    }

    # When the settings are read
    read = from_environment(environ)

    # Then the list is split and trimmed, the number is an int, the string is as set, the rest are defaults
    assert read.replay_target_arns == ("arn:aws:events:a", "arn:aws:sqs:b")
    assert read.evaluator_shards == 3
    assert read.stage == "prod"
    assert read._replace(replay_target_arns=(), evaluator_shards=1, stage="dev") == Settings()


def test_an_empty_variable_is_an_empty_value_not_the_default():
    read = from_environment({"RUNBOOK_URL": "", "REPLAY_TARGET_ARNS": ""})
    assert read.runbook_url == ""
    assert read.replay_target_arns == ()
