"""dgd operator: turns DynamoGraphDeployments into Kubernetes objects."""

__version__ = "0.1.0"
