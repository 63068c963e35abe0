"""Who may do what, as the original luci had it (rhcs-facts §6.1): three global rights and six per cluster."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from luci_web.clusters.models import Cluster


class ClusterGrant(models.Model):
    """One user's rights on one cluster. Global rights are Django permissions on this model (Meta.permissions);
    a superuser is a Luci Administrator and holds every right."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cluster_grants")
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="grants")
    view = models.BooleanField(default=True, verbose_name="Can View This Cluster")
    config = models.BooleanField(default=False, verbose_name="Can Change the Cluster Configuration")
    service_cmd = models.BooleanField(default=False,
                                      verbose_name="Can Enable/Disable/Relocate/Migrate Service Groups")
    node_cmd = models.BooleanField(default=False, verbose_name="Can Stop/Start/Reboot/Fence Cluster Nodes")
    membership = models.BooleanField(default=False, verbose_name="Can Add and Delete Nodes")
    remove = models.BooleanField(default=False, verbose_name="Can Remove This Cluster from Luci")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "cluster"], name="one_grant_per_user_cluster")]
        permissions = [
            ("create_clusters", "Can Create Clusters"),
            ("import_clusters", "Can Import Existing Clusters"),
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.cluster}"
