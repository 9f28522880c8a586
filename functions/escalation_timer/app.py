def lambda_handler(_event, _context):
    return {}
