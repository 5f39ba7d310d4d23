"""The DynamoGraphDeployment API (nvidia.com/v1alpha1) as pydantic models, and CRD generation."""
