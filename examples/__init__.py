"""Complete CDK apps that put the approval step into workflows of their own."""
