"""The seed's auth snippet (an API Gateway token authorizer's generatePolicy),
as it appears in the seed slides, made runnable: it times its own call with
time.time() and prints the difference in seconds, which is what
`slokit profile --command 'python3 examples/seed/test_auth.py' --time-from stdout`
reads as each run's time.
"""
import time


class Empty:
    pass


def generatePolicy(principalId, effect, resource):
    start_time = time.time()
    authResponse = Empty()
    authResponse.principalId = principalId
    if effect and resource:
        policyDocument = Empty()
        policyDocument.Version = '2012-10-17'
        policyDocument.Statement = [None]
        statementOne = Empty()
        statementOne.Action = 'execute-api:Invoke'
        statementOne.Effect = effect
        statementOne.Resource = resource
        policyDocument.Statement[0] = statementOne
        authResponse.policyDocument = policyDocument

    # Optional output with custom properties of the String, Number or Boolean type.
    authResponse.context = {
        "stringKey": "stringValue",
        "numberKey": 123,
        "booleanKey": True
    }
    end_time = time.time()
    execute_time = end_time - start_time
    print(execute_time)
    return authResponse


if __name__ == '__main__':
    resource = "arn:aws:execute-api:{regionId}:{accountId}:{apiId}/{stage}/{httpVerb}/{resource}/{child-resources}"
    generatePolicy('user', 'Allow', resource)
