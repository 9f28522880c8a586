from aws_lambda_powertools.event_handler import APIGatewayRestResolver

app = APIGatewayRestResolver()


@app.get("/events/connectors/overview")
def overview():
    return {"items": []}


def lambda_handler(event, context):
    return app.resolve(event, context)
