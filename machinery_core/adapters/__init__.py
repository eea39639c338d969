"""What talks to the outside: DynamoDB, Step Functions, services over HTTP."""
