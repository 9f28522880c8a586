"""The template is the single source of truth: these tests hold it to what the service promises."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
from botocore.exceptions import ClientError

from devstack.functions import read_functions
from devstack.resources import lift_tls_only_denies
from tests.support import EVENTS_DIR, FUNCTIONS_DIR, ROOT, load_template

TEMPLATE = load_template()
RESOURCES = TEMPLATE.body["Resources"]
FUNCTIONS = {key: value for key, value in RESOURCES.items() if value["Type"] == "AWS::Serverless::Function"}
TABLES = {key: value for key, value in RESOURCES.items() if value["Type"] == "AWS::DynamoDB::Table"}


def test_globals_pin_runtime_architecture_tracing_and_powertools_settings():
    function_globals = TEMPLATE.body["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    variables = function_globals["Environment"]["Variables"]
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE"} <= set(variables)


def test_parameters_cover_stage_schedule_escalation_emails_and_secret_location():
    parameters = TEMPLATE.body["Parameters"]
    assert parameters["SlaEvaluationSchedule"]["Default"] == "rate(1 minute)"
    assert set(parameters["Stage"]["AllowedValues"]) == {"dev", "prod"}
    for name in ("RiskOwnerEmail", "PlatformOwnerEmail", "DutyManagerEmail"):
        assert name in parameters
    assert set(parameters["SecretsStore"]["AllowedValues"]) == {"secretsmanager", "ssm"}


@pytest.mark.parametrize("logical_id", sorted(TABLES))
def test_tables_are_on_demand_with_point_in_time_recovery_and_encryption(logical_id):
    properties = TABLES[logical_id]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_moto_tables_are_built_from_the_template(aws):
    dynamodb = aws.client("dynamodb")
    for logical_id, resource in TABLES.items():
        description = dynamodb.describe_table(TableName=aws.name(logical_id))["Table"]
        declared = {index["IndexName"] for index in resource["Properties"].get("GlobalSecondaryIndexes", [])}
        assert {index["IndexName"] for index in description.get("GlobalSecondaryIndexes", [])} == declared
        assert description["KeySchema"] == resource["Properties"]["KeySchema"]
    state_table = dynamodb.describe_table(TableName=aws.name("ConnectorsTable"))["Table"]
    assert state_table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_the_state_stream_feeds_escalation_with_its_failure_configuration():
    events = FUNCTIONS["EscalationFunction"]["Properties"]["Events"]
    stream = next(event["Properties"] for event in events.values() if event["Type"] == "DynamoDB")
    assert stream["Stream"] == {"Fn::GetAtt": ["ConnectorsTable", "StreamArn"]}
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["BisectBatchOnFunctionError"] is True
    assert 0 < stream["MaximumRetryAttempts"] <= 10
    assert stream["MaximumRecordAgeInSeconds"] > 0
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["EscalationFailureQueue", "Arn"]}
    assert RESOURCES["EscalationFailureQueue"]["Type"] == "AWS::SQS::Queue"


def _statements(function: dict) -> list[dict]:
    policies = function["Properties"].get("Policies", [])
    statements = []
    for policy in policies:
        assert isinstance(policy, dict) and set(policy) == {"Statement"}, (
            f"only inline statements are allowed, not SAM policy templates or managed policies: {policy}"
        )
        statements.extend(policy["Statement"])
    return statements


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_has_explicit_least_privilege_policies(logical_id):
    statements = _statements(FUNCTIONS[logical_id])
    assert statements, f"{logical_id} declares no policy"
    for statement in statements:
        actions = statement["Action"]
        if isinstance(actions, dict):  # Fn::If between two explicit lists
            actions = [action for branch in actions["Fn::If"][1:] for action in branch]
        for action in actions:
            assert "*" not in action, f"{logical_id}: wildcard action {action}"
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), f"{logical_id}: malformed action {action}"
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            assert resource != "*", f"{logical_id}: blanket resource"
            text = json.dumps(resource)
            # A trailing wildcard is only allowed under a named prefix (objects, secrets, schedules of one group).
            if text.endswith('*"'):
                assert re.search(r"(evidence/\*|/\*\"|:identity/\*)", text), f"{logical_id}: broad resource {text}"


def test_dynamodb_actions_never_cover_transactions_by_a_non_existent_action():
    # TransactWriteItems is authorized through PutItem/UpdateItem/ConditionCheckItem; naming it grants nothing.
    for logical_id, function in FUNCTIONS.items():
        for statement in _statements(function):
            actions = statement["Action"] if isinstance(statement["Action"], list) else []
            assert "dynamodb:TransactWriteItems" not in actions, logical_id


def test_only_the_callback_route_is_open_at_the_gateway():
    functions = read_functions(TEMPLATE)
    open_routes = [
        (route.method, route.path) for spec in functions.values() for route in spec.routes if route.open_route
    ]
    assert open_routes == [("POST", "/alerts/oncall/callback")]
    api_auth = RESOURCES["OperationsApi"]["Properties"]["Auth"]
    assert api_auth["DefaultAuthorizer"] == {"Fn::If": ["UseCognito", "OperatorCognito", "AWS_IAM"]}


def test_every_function_folder_is_in_the_template_and_has_a_sample_event():
    code_dirs = {FUNCTIONS[key]["Properties"]["CodeUri"].strip("/").split("/")[-1] for key in FUNCTIONS}
    assert code_dirs == {path.name for path in FUNCTIONS_DIR.iterdir() if path.is_dir()}
    for folder in code_dirs:
        assert (FUNCTIONS_DIR / folder / "app.py").is_file()
        samples = list(EVENTS_DIR.glob(f"{folder}_*.json"))
        assert samples, f"events/ has no sample event for {folder}"
        for sample in samples:
            json.loads(sample.read_text())


def test_evidence_bucket_is_locked_encrypted_private_and_tls_only(aws):
    properties = RESOURCES["EvidenceBucket"]["Properties"]
    assert properties["ObjectLockEnabled"] is True
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    s3 = aws.client("s3")
    bucket = aws.name("EvidenceBucket")
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    deny = policy["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_the_local_stack_lifts_only_the_tls_only_deny_so_its_plain_http_calls_reach_the_bucket(aws):
    # Given the evidence bucket as the template declares it: moto refuses a plain write despite the condition
    s3 = aws.client("s3")
    bucket = aws.name("EvidenceBucket")
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="probe", Body=b"x")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # When the local stack lifts the TLS-only statements
    lines = lift_tls_only_denies(aws.template, aws.client)

    # Then it says so, the bucket takes the write, and the template still declares the statement
    assert lines == [f"S3::BucketPolicy {bucket}: TLS-only deny lifted (the local stack is plain HTTP)"]
    s3.put_object(Bucket=bucket, Key="probe", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"x"
    statement = RESOURCES["EvidenceBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_functions_share_one_set_of_environment_names(aws):
    # Given every function's resolved environment, Then a name means the same value in every function
    # (tests and the local stack rely on it when several handlers run in one process).
    from tests.support import function_environment

    assert function_environment(aws.functions)["CONNECTORS_TABLE"] == aws.name("ConnectorsTable")


@pytest.mark.parametrize("environment", ["default", "dev", "prod"])
def test_samconfig_has_deploy_defaults_for_each_environment_that_name_real_parameters(environment):
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config[environment]["deploy"]["parameters"]
    assert {"stack_name", "region", "capabilities", "resolve_s3", "confirm_changeset"} <= set(deploy)
    assert deploy["resolve_s3"] is True and deploy["confirm_changeset"] is True
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    overrides = dict(pair.split("=", 1) for pair in deploy["parameter_overrides"].split())
    assert set(overrides) <= set(TEMPLATE.body["Parameters"]), set(overrides) - set(TEMPLATE.body["Parameters"])
    assert overrides["Stage"] == ("prod" if environment == "prod" else "dev")


def test_plain_sam_deploy_and_the_dev_environment_deploy_the_same_stack():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["deploy"]["parameters"] == config["dev"]["deploy"]["parameters"]
